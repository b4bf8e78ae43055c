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


def _explain_summary(log_dir: Path, name: str, trainer: str, *overrides: str) -> dict:
    """Run explain.py in ``log_dir/name`` on ``trainer=cpu|gpu``; its summary.json."""
    sub = log_dir / name
    sub.mkdir()
    result = run_entry("explain.py", f"trainer={trainer}", "logger=none", *overrides, cwd=sub)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir(sub, "explain") / "summary.json").read_text())


def test_explain_metrics_on_gpu_match_cpu(tmp_path: Path) -> None:
    """Every metric (part ground truth, interventions, deletion/insertion, randomisation) on CUDA
    gives the CPU's numbers: switched images, maps and perturbations all reach the model's device."""
    result = run_entry("train.py", *TINY, "trainer=gpu", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    data = [o for o in TINY if o.startswith("data.") and "batch_size" not in o]
    overrides = (
        f"ckpt_path={ckpt}",
        *data,
        "max_pairs=3",
        "attribution.layer=layer2",
        "metrics=[parts,interventions,deletion,insertion,randomisation]",
        "metric_options.steps=8",
    )
    cpu, gpu = (_explain_summary(tmp_path, t, t, *overrides) for t in ("cpu", "gpu"))
    for key in ("precision", "intervention_spearman", "deletion_auc", "insertion_auc", "chance_random_precision"):
        assert (gpu.get(key) is None) == (cpu.get(key) is None), key  # None: no map with evidence
        assert cpu.get(key) is None or gpu[key] == pytest.approx(cpu[key], rel=1e-3, abs=1e-3), key
    assert cpu["deletion_auc"] is not None and cpu["chance_random_precision"] is not None


def test_verify_triplets_on_gpu(tmp_path: Path) -> None:
    """Verification explanations (a gradient method and the black-box RISE) of an ArcFace embedder on CUDA."""
    faceparts = (
        "data.num_identities=6", "data.images_per_identity=6", "data.image_size=48", "data.test_fraction=0.5",
        "model.input.size=32",
    )  # fmt: skip
    result = run_entry(
        "train.py", "objective=arcface", "objective.heldout_identities=3", *faceparts,
        "trainer.max_epochs=1", "trainer=gpu", "logger=none", "figure_samples=0", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    triplets = ("mode=verify", "pairs=triplets", "max_pairs=3", f"ckpt_path={ckpt}", *faceparts)
    for method, option in (("gradcampp", "attribution.layer=layer3"), ("rise", "attribution.kwargs.masks=16")):
        summary = _explain_summary(tmp_path, method, "gpu", *triplets, f"attribution={method}", option)
        assert summary["triplets"] == 3 and summary["attribution"] == method
