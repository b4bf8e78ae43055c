"""Checkpoints and resume: last.ckpt is the latest state, resume is exact, the schedule continues."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from scout_exp.data.datamodules import EpochShuffle
from scout_exp.training.callbacks import ExactResume
from scout_exp.training.module import warmup_cosine
from tests.conftest import TINY, run_dir, run_entry

BASE = tuple(o for o in TINY if not o.startswith("trainer.max_epochs")) + ("logger=none", "scheduler=none")


def _train(log_dir: Path, *overrides: str) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    result = run_entry("train.py", *BASE, *overrides, cwd=log_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir(log_dir)


@pytest.mark.slow
def test_last_checkpoint_is_latest_and_resume_is_exact(tmp_path: Path) -> None:
    whole = _train(tmp_path / "whole", "trainer.max_epochs=3")
    first = _train(tmp_path / "first", "trainer.max_epochs=2")
    summary = json.loads((whole / "summary.json").read_text())
    last = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    # last.ckpt holds the final state whatever val_acc did
    assert last["global_step"] == summary["global_step"] and last["epoch"] == summary["epochs"] - 1
    resumed = _train(tmp_path / "resumed", "trainer.max_epochs=3", f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}")
    again = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert again["global_step"] == last["global_step"]
    for key, value in last["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    resumed_summary = json.loads((resumed / "summary.json").read_text())
    assert resumed_summary["val_acc"] == pytest.approx(summary["val_acc"], abs=1e-6)
    assert resumed_summary["val_loss"] == pytest.approx(summary["val_loss"], rel=1e-5)
    assert not list((whole / "checkpoints").glob(".*.tmp"))  # written beside, then renamed
    # the best checkpoint (by val_acc) is written beside last.ckpt and named in the summary
    best = Path(summary["best_checkpoint"])
    assert best.parent == whole / "checkpoints" and best.name.startswith("epoch_") and best.is_file()
    # a SIGTERM mid-epoch (as a cluster's scheduler sends) leaves a resumable last.ckpt, exit 143
    stop = ("+callbacks.stop._target_=tests.signal_helpers.SendSignal", "+callbacks.stop.at_step=7")
    (tmp_path / "stopped").mkdir()
    result = run_entry("train.py", *BASE, "trainer.max_epochs=3", *stop, cwd=tmp_path / "stopped")
    assert result.returncode == 143, result.stderr[-3000:]
    assert "interrupted: SIGTERM at epoch 1, step 7; resume with ckpt_path=" in result.stderr
    assert "Traceback" not in result.stderr
    stopped = run_dir(tmp_path / "stopped")
    stopped_summary = json.loads((stopped / "summary.json").read_text())
    assert stopped_summary["status"] == "interrupted" and stopped_summary["signal"] == "SIGTERM"
    assert stopped_summary["global_step"] == 7
    mid = _train(tmp_path / "mid", "trainer.max_epochs=3", f"ckpt_path={stopped_summary['last_checkpoint']}")
    again = torch.load(mid / "checkpoints" / "last.ckpt", weights_only=True)
    assert again["global_step"] == last["global_step"]
    for key, value in last["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)


def test_ctrl_c_stops_with_exit_130_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    stop = ("+callbacks.stop._target_=tests.signal_helpers.SendSignal", "+callbacks.stop.at_step=2")
    result = run_entry(
        "train.py", *BASE, "trainer.max_epochs=1", *stop, "+callbacks.stop.signal_name=SIGINT", cwd=tmp_path
    )
    assert result.returncode == 130, result.stderr[-3000:]
    assert "interrupted: SIGINT at epoch 0, step 2" in result.stderr and "Traceback" not in result.stderr
    summary = json.loads((run_dir(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT"
    assert torch.load(summary["last_checkpoint"], weights_only=True)["global_step"] == 2


def test_epoch_shuffle_skips_the_done_batches_of_a_resumed_epoch_only() -> None:
    resumed, whole = EpochShuffle(20, seed=1, skip=8), EpochShuffle(20, seed=1)
    assert list(resumed) == list(whole)[8:]
    resumed.set_epoch(1)
    whole.set_epoch(1)
    assert list(resumed) == list(whole)


def test_epoch_shuffle_is_a_function_of_seed_and_epoch() -> None:
    a, b = EpochShuffle(50, seed=3), EpochShuffle(50, seed=3)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first and sorted(first) == list(range(50))


def test_resumed_schedule_continues_at_the_restored_step() -> None:
    """A run resumed with more epochs starts at its new schedule's rate, not the old schedule's final 0."""
    param = torch.nn.Parameter(torch.zeros(1))
    old = torch.optim.SGD([param], lr=0.1)
    old_schedule = torch.optim.lr_scheduler.LambdaLR(old, warmup_cosine(10))
    for _ in range(10):
        old.step()
        old_schedule.step()
    assert old.param_groups[0]["lr"] == pytest.approx(0.0)
    new = torch.optim.SGD([param], lr=0.1)
    new.load_state_dict(old.state_dict())
    schedule = torch.optim.lr_scheduler.LambdaLR(new, warmup_cosine(20))
    schedule.load_state_dict(old_schedule.state_dict())
    trainer = SimpleNamespace(
        lr_scheduler_configs=[SimpleNamespace(scheduler=schedule)], fit_loop=SimpleNamespace(restarted_mid_epoch=False)
    )
    ExactResume().on_train_start(trainer, None)  # type: ignore[arg-type]
    assert new.param_groups[0]["lr"] == pytest.approx(0.1 * warmup_cosine(20)(10)) and new.param_groups[0]["lr"] > 0.04


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    callback = ExactResume()
    torch.save(callback.state_dict(), tmp_path / "state.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    callback.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    callback.on_train_epoch_start(None, None)  # type: ignore[arg-type]
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
