"""GPU checks: skipped without CUDA (the project builds and passes its tests on CPU-only machines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from scout_exp.attribution import create_attribution
from tests.conftest import TINY, run_dir, run_entry

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_engine_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 64, 64)

    def targets(out: torch.Tensor) -> torch.Tensor:
        return out[:, :3]

    cpu = create_attribution("gradcampp", model, "layer4")(x, targets)
    gpu = create_attribution("gradcampp", model.cuda(), "layer4")(x.cuda(), targets).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


def test_training_on_gpu(tmp_path: Path) -> None:
    result = run_entry("train.py", *TINY, "trainer=gpu", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir(tmp_path) / "summary.json").read_text())["status"] == "ok"
