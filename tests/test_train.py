"""train.py end to end on tiny FaceParts settings: record, resume, DDP, W&B, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scout_exp.wandb_offline import read_offline_run
from tests.conftest import TINY, run_dir, run_entry

pytestmark = pytest.mark.slow


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_training_run_leaves_a_full_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_SILENT")  # a user's shell: the run itself keeps W&B quiet
    result = run_entry("train.py", *TINY, "logger=wandb", cwd=tmp_path)
    _ok(result)
    run = run_dir(tmp_path)
    # output to a pipe: progress as log lines with ETA; no library notices in a quiet run
    output = result.stdout + result.stderr
    assert "train epoch 1/1: 100% (5/5 batches)" in result.stdout and "ETA 0:00:00" in result.stdout
    assert "validation after epoch 1/1, val_loss" in result.stdout
    for noise in ("litlogger", "GPU available", "Total FLOPs", "LeafSpec", "wandb:", "anonymous", "ModelSummary"):
        assert noise not in output, noise
    assert "training resnet18 (11.2 M parameters)" in result.stdout
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["code"]["commit"]) == 40 and isinstance(manifest["code"]["dirty"], bool)
    assert manifest["packages"]["torch"] == torch.__version__.split("+")[0]
    assert manifest["machine"]["cpu_count"] >= 1 and manifest["stages"]["fit"]["seconds"] > 0
    assert manifest["stages"]["fit"]["peak_rss_mib"] > 100 and manifest["command"][0] == "train.py"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_acc", "val_loss", "epochs", "wall_time_s", "train_samples_per_s"):
        assert isinstance(summary[key], (int, float)), key
    assert summary["epochs"] == 1 and 0.0 <= summary["val_acc"] <= 1.0
    assert (run / "config_resolved.yaml").is_file() and (run / ".hydra" / "config.yaml").is_file()
    assert "${" not in (run / "config_resolved.yaml").read_text()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "figures" / "samples.png").stat().st_size > 1000
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["model_name"] == "resnet18"

    (offline,) = (run / "wandb").glob("offline-run-*")
    record = read_offline_run(offline)
    assert record["config"]["manifest"]["packages"]["torch"] == manifest["packages"]["torch"]
    assert record["summary"]["val_acc"] == pytest.approx(summary["val_acc"])
    assert record["summary"]["samples/count"] == 1
    assert record["config"]["model"]["name"] == "resnet18"
    assert any("train_loss" in row for row in record["history"])


def test_multirun_jobs_each_log_their_own_wandb_run(tmp_path: Path) -> None:
    # Hydra's basic launcher runs the jobs in one process: the second must not attach to the first's run
    result = run_entry("train.py", *TINY, "logger=wandb", "seed=1,2", "-m", cwd=tmp_path)
    _ok(result)
    seeds = {}
    for job in sorted((tmp_path / "train" / "multiruns").glob("*/*/")):
        (offline,) = (job / "wandb").glob("offline-run-*")
        record = read_offline_run(offline)
        summary = json.loads((job / "summary.json").read_text())
        assert record["summary"]["val_acc"] == pytest.approx(summary["val_acc"])
        seeds[record["config"]["seed"]] = offline.name
    assert sorted(seeds) == [1, 2] and len(set(seeds.values())) == 2


def test_resume_continues_from_checkpoint(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    _ok(run_entry("train.py", *TINY, "logger=none", cwd=first))
    ckpt = run_dir(first) / "checkpoints" / "last.ckpt"
    steps = json.loads((run_dir(first) / "summary.json").read_text())["global_step"]
    result = run_entry(
        "train.py", *TINY, "logger=none", "trainer.max_epochs=2", f"ckpt_path={ckpt}", "verbose=true", cwd=second
    )
    _ok(result)
    assert "GPU available" in result.stdout + result.stderr  # verbose=true shows Lightning's notices
    summary = json.loads((run_dir(second) / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["global_step"] == 2 * steps


def test_two_process_ddp(tmp_path: Path) -> None:
    result = run_entry(
        "train.py",
        *TINY,
        "logger=csv",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "verbose=true",  # Lightning's notice of the process group
        cwd=tmp_path,
    )
    _ok(result)
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["val_acc"] is not None
    assert (
        "world_size=2" in result.stdout + result.stderr or "distributed_backend=gloo" in result.stdout + result.stderr
    )


def _one_error_line(result) -> str:
    """The run failed with exit status 2 and exactly one ``error:`` line, last, and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]
    return errors[0]


def test_missing_data_root_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(
        run_entry("train.py", "data=image_folder", f"data.root={tmp_path / 'nowhere'}", "logger=none", cwd=tmp_path)
    )
    assert line.startswith("error: image folder") and "does not exist" in line


def test_unset_data_root_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(run_entry("train.py", "data=image_folder", "logger=none", cwd=tmp_path))
    assert "data.root" in line


def test_unreadable_image_in_folder_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for ident in ("alice", "bob"):
        (root / ident).mkdir(parents=True)
        for k in range(4):
            cv2.imwrite(str(root / ident / f"{k}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    (root / "bob" / "broken.jpg").write_bytes(b"not a jpeg at all")
    line = _one_error_line(
        run_entry(
            "train.py",
            "data=image_folder",
            f"data.root={root}",
            "data.batch_size=7",  # one batch holds every training image (a smaller one may drop the broken one)
            "data.num_workers=1",
            "data.val_fraction=0.25",
            "model.input.size=32",
            "trainer.max_epochs=1",
            "logger=none",
            "figure_samples=0",
            cwd=tmp_path,
        )
    )
    assert "broken.jpg" in line


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("ckpt_path=/no/such/run/last.ckpt",), "does not exist"),
        (("train=false",), "train=false evaluates a trained network"),
    ],
)
def test_bad_checkpoint_requests_are_one_line(tmp_path: Path, overrides: tuple[str, ...], expected: str) -> None:
    line = _one_error_line(run_entry("train.py", *TINY, "logger=none", *overrides, cwd=tmp_path))
    assert expected in line
