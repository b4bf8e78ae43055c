"""Bad config values, output folders, checkpoints and sweep folders: one line each, through the real CLI."""

from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scout_exp.attribution.base import zero_degenerate
from scout_exp.cli import _user_message
from scout_exp.explain.predict import defined_mean
from scout_exp.training.callbacks import ModelCheckpoint
from tests.conftest import ROOT, TINY, run_entry
from tests.reliability_helpers import face_images, tiny_checkpoint


def _one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-3000:]
    for text in expected:
        assert text in last, last
    return last


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("trainer.max_epochs=abc",), ("trainer.max_epochs", "integer")),
        (("hydra.run.dir=/proc/x/run",), ("/proc/x/run",)),
        (("model=resnet5,resnet18", "-m"), ("resnet5", "valid choices")),
    ],
)
def test_train_bad_values_are_one_line(tmp_path: Path, overrides: tuple[str, ...], expected: tuple[str, ...]) -> None:
    _one_line(run_entry("train.py", "logger=none", *overrides, cwd=tmp_path), *expected)


def test_output_folder_blocked_by_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), f"paths.log_dir={tmp_path / 'file' / 'logs'}", "logger=none"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PROJECT_ROOT=str(ROOT)),
    )
    _one_line(result, "is a file")


def test_runs_started_together_get_their_own_folders(tmp_path: Path) -> None:
    env = dict(os.environ, PROJECT_ROOT=str(ROOT), WANDB_MODE="offline")
    cmd = [sys.executable, str(ROOT / "train.py"), f"paths.log_dir={tmp_path}", "logger=none", "train=false", *TINY]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        proc.communicate(timeout=600)
    runs = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(runs) == 2, runs
    assert all((run / "summary.json").is_file() for run in runs)


@pytest.fixture(scope="module")
def explain_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    a, b = face_images(folder)
    return tiny_checkpoint(folder / "tiny.ckpt"), a, b


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("classes=[1.5,3]", ("1.5", "not an integer")),
        ("classes=[true,3]", ("True", "not an integer")),
        ("attribution.layer=fc", ("fc", "feature map")),
    ],
)
def test_explain_bad_values_are_one_line(
    tmp_path: Path, explain_inputs: tuple[Path, Path, Path], override: str, expected: tuple[str, ...]
) -> None:
    ckpt, a, b = explain_inputs
    result = run_entry("explain.py", f"ckpt_path={ckpt}", f"images=[{a},{b}]", "logger=none", override, cwd=tmp_path)
    _one_line(result, *expected)


def _malicious(path: Path) -> Path:
    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, ("touch " + str(path.parent / "pwned"),))

    path.write_bytes(pickle.dumps({"state_dict": Payload()}))
    return path


@pytest.mark.parametrize("kind", ["malicious", "corrupt"])
def test_unusable_checkpoint_never_advises_weights_only_false(tmp_path: Path, kind: str) -> None:
    ckpt = tmp_path / "bad.ckpt"
    if kind == "malicious":
        _malicious(ckpt)
    else:
        ckpt.write_bytes(b"\x80\x04not a checkpoint" * 10)  # a pickle header, then garbage
    result = run_entry("explain.py", f"ckpt_path={ckpt}", "images=[sample:grace_hopper]", "logger=none", cwd=tmp_path)
    last = _one_line(result, str(ckpt))
    assert "weights_only=False" not in result.stderr and not (tmp_path / "pwned").exists()
    assert "not a checkpoint of this project or may be unsafe" in last


@pytest.mark.slow
def test_other_network_in_checkpoint_warns_and_goes_on(tmp_path: Path, explain_inputs: tuple[Path, Path, Path]) -> None:
    _, a, b = explain_inputs
    ckpt = tiny_checkpoint(tmp_path / "r50.ckpt", "resnet50")
    result = run_entry(
        "explain.py", f"ckpt_path={ckpt}", f"images=[{a},{b}]", "model=resnet18", "logger=none", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "resnet50" in warning[0] and "resnet18" in warning[0], result.stderr[-2000:]


def test_collect_reports_an_unreadable_job_and_tabulates_the_rest(tmp_path: Path) -> None:
    for job, text in (
        ("0", json.dumps({"status": "ok", "val_acc": 0.5})),
        ("1", '{"status": "ok", "val_'),
        ("2", "\udcff"),
    ):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
        (tmp_path / job / "summary.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "scout_exp.sweeps", "collect", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["job"]: r for r in csv.DictReader((tmp_path / "results.csv").open())}
    assert rows["0"]["status"] == "ok" and float(rows["0"]["val_acc"]) == 0.5
    assert rows["1"]["status"] == rows["2"]["status"] == "unreadable" and "summary.json" in rows["1"]["error"]


def test_full_disk_leaves_no_truncated_checkpoint_and_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "epoch_000.ckpt"

    def save_checkpoint(path: Path, weights_only: bool = False) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    trainer = SimpleNamespace(save_checkpoint=save_checkpoint, is_global_zero=True, global_step=1, loggers=[])
    with pytest.raises(OSError) as info:
        ModelCheckpoint(dirpath=tmp_path)._save_checkpoint(trainer, str(target))  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    message = _user_message(info.value)
    assert "\n" not in message and "No space left on device" in message


def test_degenerate_maps_are_zero_and_empty_means_do_not_warn() -> None:
    noise = torch.full((4, 4), 1e-12)
    noise[0, 0] = -3e-11
    maps = torch.stack([noise, torch.eye(4)])
    out = zero_degenerate(maps)
    assert not out[0].any() and torch.equal(out[1], maps[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = defined_mean([[np.nan, 1.0], [np.nan, 3.0]])
        empty = defined_mean([], 3)
    assert np.isnan(mean[0]) and mean[1] == 2.0 and empty.shape == (3,) and np.isnan(empty).all()
