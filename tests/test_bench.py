"""The benchmarks run and report what their acceptance criteria read (numbers are not asserted)."""

from __future__ import annotations

import subprocess
import sys

from scout_exp.bench import train as bench_train
from scout_exp.data.casia_dat import measure_dat_throughput
from scout_exp.data.faceparts import measure_render_throughput


def test_data_throughputs_are_positive() -> None:
    assert measure_render_throughput(n=40, image_size=112) > 0
    assert measure_dat_throughput(n=40) > 0


def test_train_bench_reports_both_loops() -> None:
    result = bench_train.main(batch=4, steps=2, size=32)
    assert result["plain_samples_per_s"] > 0 and result["lightning_samples_per_s"] > 0
    expected = result["lightning_samples_per_s"] / result["plain_samples_per_s"]
    assert abs(result["ratio"] - expected) < 0.01


def test_cli_rejects_unknown_bench() -> None:
    result = subprocess.run([sys.executable, "-m", "scout_exp.bench", "nope"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr
