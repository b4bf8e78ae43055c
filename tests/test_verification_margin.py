"""Margin-softmax face embedder: the losses by hand, checkpoints explain.py loads, verify-mode CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from scout_exp.checkpoint import OBJECTIVE_KEY
from scout_exp.errors import UserError
from scout_exp.training.margin import MarginEmbedderModule, MarginSoftmax, all_pairs
from scout_exp.training.module import ClassifierModule
from tests.conftest import run_dir, run_entry

SPEC = {"size": 32, "channel_order": "RGB", "mean": [0.5] * 3, "std": [0.25] * 3, "pixel_scale": 1.0}


@pytest.mark.parametrize(("loss", "margin"), [("arcface", 0.5), ("cosface", 0.35)])
def test_margin_softmax_matches_hand_computation(loss: str, margin: float) -> None:
    torch.manual_seed(0)
    head = MarginSoftmax(4, 3, loss, scale=16.0, margin=margin)
    emb, labels = torch.randn(5, 4), torch.tensor([0, 2, 1, 1, 0])
    w = head.weight.detach().numpy()
    e = emb.numpy()
    cos = (e / np.linalg.norm(e, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    expected = 0.0
    for b, y in enumerate(labels.tolist()):
        logits = 16.0 * cos[b].copy()
        theta = math.acos(cos[b, y])
        true = math.cos(theta + margin) if loss == "arcface" else cos[b, y] - margin
        if loss == "arcface" and theta + margin > math.pi:  # past pi - m: the authors' linear fallback
            true = cos[b, y] - margin * math.sin(margin)
        logits[y] = 16.0 * true
        expected += (np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[y]) / len(labels)
    assert head(emb, labels).item() == pytest.approx(expected, rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16-mixed run: the margin logits stay float32
        assert head(emb, labels).item() == pytest.approx(expected, rel=1e-5)


def test_all_pairs_scores_and_bad_settings() -> None:
    scores, same = all_pairs(torch.eye(3), torch.tensor([0, 0, 1]))
    np.testing.assert_allclose(scores, [0, 0, 0]) and np.testing.assert_array_equal(same, [True, False, False])
    with pytest.raises(UserError, match="heldout_identities"):
        MarginEmbedderModule("resnet18", 4, heldout_identities=3, input_spec=SPEC)
    with pytest.raises(UserError, match="unknown margin loss"):
        MarginSoftmax(4, 3, "sphereface")


def _save(module: torch.nn.Module, path: Path) -> Path:
    """A checkpoint in train.py's format, recording the objective module that wrote it."""
    cls = type(module)
    checkpoint = {
        "hyper_parameters": dict(module.hparams),
        "state_dict": module.state_dict(),
        "pytorch-lightning_version": lightning.__version__,
        OBJECTIVE_KEY: {"name": cls.__name__, "target": f"{cls.__module__}.{cls.__qualname__}"},
    }
    torch.save(checkpoint, path)
    return path


FACEPARTS = (
    "data.num_identities=6",
    "data.images_per_identity=6",
    "data.image_size=48",
    "model.input.size=32",
    "logger=none",
    "max_figures=1",
)


@pytest.mark.slow
def test_verify_cli_on_triplets_of_unseen_identities_and_bad_inputs(tmp_path: Path) -> None:
    embedder = MarginEmbedderModule("resnet18", 6, heldout_identities=3, input_spec=SPEC, target_layer="layer3")
    ckpt = _save(embedder, tmp_path / "arcface.ckpt")
    proc = run_entry(
        "explain.py",
        "mode=verify",
        "pairs=triplets",
        "max_pairs=3",
        f"ckpt_path={ckpt}",
        "attribution=rise",
        "attribution.kwargs.masks=8",
        *FACEPARTS,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = run_dir(tmp_path, "explain")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["triplets"] == 3 and summary["attribution"] == "rise" and 0 < summary["chance_share"] < 0.2
    records = json.loads((out / "explanations.json").read_text())["pairs"]
    assert all(r["probe"] % 6 >= embedder.num_train and r["mate"] % 6 >= embedder.num_train for r in records)
    assert (out / records[0]["figure"]).is_file()

    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    proc = run_entry(
        "explain.py",
        "mode=verify",
        "pairs=triplets",
        f"ckpt_path={ckpt}",
        "attribution=rise",
        "attribution.layer=layer3",
        *FACEPARTS,
        cwd=tmp_path / "b",
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        "error: attribution=rise is a black-box"
    )
    classifier = ClassifierModule("resnet18", 6, input_spec=SPEC)
    plain = _save(classifier, tmp_path / "softmax.ckpt")
    proc = run_entry(
        "explain.py",
        "mode=verify",
        f"ckpt_path={plain}",
        "images=[sample:grace_hopper,sample:eileen_collins]",
        *FACEPARTS,
        cwd=tmp_path / "c",
    )
    assert proc.returncode == 2 and "is a classifier with no embedding and no gallery" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    cfg = OmegaConf.load(out / "config_resolved.yaml")
    assert cfg.pairs == "triplets"
