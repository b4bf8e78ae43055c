"""Shared fixtures: keep W&B offline and quiet, and runs inside pytest's temporary folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


def run_entry(script: str, *overrides: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python <script> overrides...`` as a user would, logs under ``cwd``."""
    env = dict(os.environ, PROJECT_ROOT=str(ROOT), WANDB_MODE="offline", WANDB_SILENT="true",
               HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(ROOT / script), f"paths.log_dir={cwd}", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
