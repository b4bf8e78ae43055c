"""Shared fixtures: keep W&B offline and quiet, and runs inside pytest's temporary folders."""

from __future__ import annotations

import os
import subprocess
import subprocess as _subprocess
import sys
from pathlib import Path

import pytest

# imported before torch: it records the warning filters torch and Lightning install on import
from tests.in_process import needs_process, run_script, torch

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest-xdist workers on two cores: one thread each (and in every
    # command a test starts, which inherits the variable), so torch never oversubscribes the cores
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "subprocess: runs an entry point as a real command (run_entry(..., subprocess=True))"
    )


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


def run_entry(
    script: str, *overrides: str, cwd: Path, timeout: float = 600, subprocess: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``python <script> overrides...`` as a user would, logs under ``cwd``.

    In this process by default (:mod:`tests.in_process`: the script runs as ``__main__`` with
    ``sys.argv``, environment and working directory set, its output captured, the process state
    restored after), which saves the seconds a command spends importing torch and Lightning.
    ``subprocess=True`` starts the real command (mark such tests ``@pytest.mark.subprocess``);
    overrides a single process cannot run (a signal to itself, DDP; :func:`needs_process`) start
    it too. ``timeout`` applies to a real command only.
    """
    env = dict(
        os.environ,
        PROJECT_ROOT=str(ROOT),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HYDRA_FULL_ERROR="0",
        PYTHONUNBUFFERED="1",
    )
    args = [f"paths.log_dir={cwd}", *overrides]
    if not subprocess and needs_process(overrides) is None:
        return run_script(ROOT / script, args, cwd=cwd, env=env)
    cmd = [sys.executable, str(ROOT / script), *args]
    return _subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


#: Overrides that make a FaceParts training run take seconds on a CPU.
TINY = (
    "data.num_identities=4",
    "data.images_per_identity=12",
    "data.image_size=96",
    "data.batch_size=8",
    "model.input.size=32",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "figure_samples=4",
)


def run_dir(log_dir: Path, task: str = "train") -> Path:
    """The single Hydra run directory a test run created under ``log_dir``."""
    runs = sorted((log_dir / task / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]
