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


def test_metrics_bench_reports_every_metric() -> None:
    """``python -m scout_exp.bench metrics`` at a small size: each metric's cost and the speed-ups over quantus."""
    from scout_exp.bench import metrics as bench_metrics
    from scout_exp.metrics import metric_names

    result = bench_metrics.main(pairs=1, size=48)
    for metric in metric_names():
        assert result[f"{metric}_pairs_per_s"] > 0 and result[f"{metric}_forwards_per_image"] >= 0
    assert result["deletion_forwards_per_image"] == 1 + 1 + 2 * 15  # image, baseline, 15 inner stages (map and chance)
    assert result["road_forwards_per_image"] == 2 * 9  # nine removal fractions, map and chance
    assert result["deletion_speedup_over_quantus"] > 0 and result["all_metrics_time_over_explain"] > 0


def test_cli_checks_pairs_option() -> None:
    def bench(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scout_exp.bench", *args], capture_output=True, text=True)

    wrong_bench = bench("train", "--pairs", "10")
    assert wrong_bench.returncode == 2 and "--pairs applies to explain_e2e only" in wrong_bench.stderr
    not_numbers = bench("explain_e2e", "--pairs", "ten")
    assert not_numbers.returncode == 2 and "comma-separated integers" in not_numbers.stderr
    too_many = bench("explain_e2e", "--pairs", "100,5000")
    assert too_many.returncode == 2 and "sizes in 1..2000" in too_many.stderr
