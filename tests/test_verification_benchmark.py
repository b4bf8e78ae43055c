"""FaceParts triplets and the verification benchmark's scoring."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from scout_exp.data.faceparts import FaceParts, blur_radius
from scout_exp.data.faceparts_triplets import Triplet, TripletDataset, make_triplets, render_triplet
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.verification import VerificationExplainer
from scout_exp.explain.verify_benchmark import (
    collect_leaderboard,
    explain_triplets,
    inpainting_scores,
    leaderboard_markdown,
    triplet_summary,
)
from scout_exp.io import save_json

SPEC = InputSpec(size=48, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_inpainting_scores_by_hand() -> None:
    truth = np.zeros((3, 2, 2), bool)
    truth[:, 0, 0] = True
    maps = np.array([[[3.0, 1.0], [0.0, 0.0]], [[0.0, 2.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    s = inpainting_scores(maps, truth)
    np.testing.assert_allclose(s["share"][:2], [0.75, 0.0])
    np.testing.assert_allclose(s["hit"][:2], [1.0, 0.0])
    assert np.isnan(s["share"][2]) and np.isnan(s["hit"][2])  # no evidence: degenerate
    np.testing.assert_allclose(s["chance"], 0.25)


def test_triplets_switch_one_visible_part_and_refuse_identical_ones() -> None:
    fp = FaceParts(num_identities=6, images_per_identity=4, image_size=48, difficulty=0.5)
    triplets = make_triplets(fp, range(len(fp)), 8, parts=("nose", "mouth"), seed=1)
    assert [t.part for t in triplets[:4]] == ["nose", "mouth", "nose", "mouth"]
    for t in triplets:
        probe, mate, non_mate = render_triplet(fp, t)
        assert fp.identity_of(t.probe) == fp.identity_of(t.mate) != t.donor and t.probe != t.mate
        changed = np.abs(mate.image.astype(int) - non_mate.image.astype(int)).sum(axis=2) > 0
        near = fp.part_mask(mate, [t.part]) | fp.part_mask(non_mate, [t.part])
        r = blur_radius(48, 0.5) + 1  # a swap changes pixels within the blur radius of the part's labels
        near = cv2.dilate(near.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)
        assert changed.any() and not (changed & ~near).any()
    same = Triplet(0, fp.num_identities, "nose", donor=0, name="t")
    with pytest.raises(UserError, match="t: mate and non-mate are identical"):
        render_triplet(fp, same)
    with pytest.raises(UserError, match="cannot switch"):
        make_triplets(fp, range(len(fp)), 2, parts=("occluder",))


class OnePartEmbedder(nn.Module):
    """Reads the pixels inside a fixed mask only (``pixels`` is the layer the maps are taken at)."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.pixels = nn.Identity()
        self.register_buffer("mask", torch.from_numpy(mask.astype(np.float32)))
        self.proj = nn.Linear(3 * mask.size, 16, bias=False)
        torch.manual_seed(0)
        nn.init.normal_(self.proj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj((self.pixels(x) * self.mask).flatten(1))


def test_benchmark_scores_an_embedder_that_reads_one_part(tmp_path: Path) -> None:
    fp = FaceParts(num_identities=6, images_per_identity=4, image_size=48, difficulty=0.0)
    triplets = make_triplets(fp, range(len(fp)), 6, parts=("mouth",), seed=2)
    mouth = np.zeros((48, 48), bool)
    for t in triplets:
        for s in render_triplet(fp, t):
            mouth |= fp.part_mask(s, ["mouth"])
    dataset = TripletDataset(fp, triplets, Preprocess(SPEC))
    explainer = VerificationExplainer(OnePartEmbedder(mouth), "pixels", "gradxact")
    predictions = explain_triplets(explainer, dataset, batch_size=4, max_figures=1)
    for item in predictions:
        item.write_files(tmp_path)
    records = [item.record for item in predictions]
    summary = triplet_summary(records)
    assert summary["hit"] == 1.0 and summary["share"] > 0.6 > 5 * summary["chance_share"]
    assert (tmp_path / records[0]["figure"]).is_file() and "figure" not in records[1]
    save_json({"mode": "verify", "attribution": "gradxact", **summary}, tmp_path / "run" / "summary.json")
    rows = collect_leaderboard(tmp_path)
    assert [r["method"] for r in rows] == ["gradxact", "chance (uniform map)"]
    chance = rows[-1]  # a random map perturbed by the same protocol, with its CI
    assert chance["deletion_auc"] == summary["chance_deletion_auc"] and len(chance["insertion_auc_ci"]) == 2
    assert "| gradxact | 6 |" in leaderboard_markdown(rows)
