"""Figures a reader can check: names in titles, colour bars, ground-truth outlines, chance lines, ties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scout_exp.explain.figures import (
    SIGNED_CMAP,
    UNSIGNED_CMAP,
    draw_pair_figure,
    draw_pr_figure,
    map_norm,
    pr_chance,
)
from scout_exp.explain.metric_figures import draw_curve_figure
from scout_exp.explain.predict import _score_text, differing_mask
from scout_exp.explain.verification_figures import draw_verification_figure
from scout_exp.metrics.truth import PartTruth
from scout_exp.sweeps.__main__ import main as sweeps_main
from tests.conftest import TINY, run_dir, run_entry

H = W = 24


def _row(signed: bool) -> dict:
    rng = np.random.default_rng(0)
    m = rng.standard_normal((H, W)).astype(np.float32)
    truth = np.zeros((H, W), bool)
    truth[5:12, 6:14] = True
    return {
        "image": (rng.random((H, W, 3)) * 255).astype(np.uint8),
        "label": "image 1: why alice not bob",
        "class_map": np.abs(m),
        "counter_map": m if signed else np.abs(m),
        "confidence_map": np.abs(m),
        "a_abar": np.abs(m),
        "a_abar_as": np.zeros((H, W), np.float32),
        "segment": np.abs(m) > 1.5,
        "truth": truth,
        "scores": "part precision 0.50, recall 0.25",
    }


def _gids(fig) -> list[str]:
    ax = fig.axes[0]
    return [a.get_gid() for a in [*ax.images, *ax.collections] if a.get_gid()]


def test_pair_figure_names_method_and_has_colour_bars_and_truth() -> None:
    title = (
        "pair_000: identity alice (A) vs bob (B)\nattribution gradxact at layer layer4, discriminant variant a_abar_as"
    )
    fig = draw_pair_figure([_row(signed=True), _row(signed=False)], title, variant="a_abar_as")
    head = fig._suptitle.get_text()
    for word in ("gradxact", "layer4", "a_abar_as", "alice", "bob", "ground truth"):
        assert word in head
    gids = _gids(fig)
    for r in (1, 2):
        for key in ("class_map", "counter_map", "confidence_map", "a_abar", "a_abar_as"):
            assert f"map:{r}:{key}" in gids and f"colorbar:{r}:{key}" in gids  # a colour bar on every map
        assert {f"truth:{r}", f"truth:{r}:a_abar_as", f"truth:{r}:segment"} <= set(gids)  # outlined parts
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("part precision 0.50, recall 0.25") == 2
    assert any(t.startswith("-") for t in texts)  # the signed map's bar runs below 0
    assert any("a * abar * a(s)\n(segmented) (0 everywhere)" == t for t in texts)


def test_signed_maps_diverge_around_zero() -> None:
    norm, cmap = map_norm(np.array([[-0.5, 2.0]]))
    assert cmap == SIGNED_CMAP and norm.vmin == -2.0 and norm.vmax == 2.0 and norm(0.0) == 0.5
    norm, cmap = map_norm(np.array([[0.0, 3.0]]))
    assert cmap == UNSIGNED_CMAP and (norm.vmin, norm.vmax) == (0.0, 3.0)
    assert map_norm(np.array([[-1e-9, 3.0]]))[1] == UNSIGNED_CMAP  # float noise is not a sign


def test_verification_figure_has_colour_bars() -> None:
    image = np.zeros((H, W, 3), np.uint8)
    sim, diff = np.random.default_rng(1).random((2, H, W)).astype(np.float32)
    fig = draw_verification_figure([image], [sim], [diff], ["probe"], "gradxact at layer4")
    assert {"colorbar:1:similar", "colorbar:1:different", "colorbar:1:signed"} <= set(_gids(fig))


def test_pr_figure_has_chance_rows() -> None:
    summary = {"chance_random_precision": 0.2, "chance_random_recall": 0.1, "chance_random_precision_ci": [0.1, 0.3]}
    summary |= {"chance_centre_precision": 0.3, "chance_centre_recall": 0.4, "chance_face_precision": 0.15}
    summary["chance_face_recall"] = 1.0
    chance = pr_chance(summary)
    assert set(chance) == {"random map", "centre prior", "whole face"}
    f = np.linspace(0.01, 1, 10)
    fig = draw_pr_figure(f, f[::-1], f, "gradxact at layer4, variant a_abar_as", chance, area_fraction=0.1)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(lab.startswith("chance: random map at 10% area") for lab in labels)
    assert any(lab.startswith("chance: centre prior") for lab in labels)
    assert any(lab.startswith("chance: whole face (precision 0.15)") for lab in labels)
    assert "layer4" in fig._suptitle.get_text()


def test_curve_figure_draws_the_chance_curves() -> None:
    item = {"deletion_curve": [1.0, 0.5, 0.0], "deletion_auc": 0.4, "chance_random_deletion_auc": 0.5}
    item |= {"deletion_random_curve": [1.0, 0.7, 0.0], "deletion_centre_curve": [1.0, 0.8, 0.0]}
    fig = draw_curve_figure([{"image_1": item, "image_2": item}], title="gradxact at layer4, variant a")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("chance: random map" in lab for lab in labels) and any("chance: centre prior" in lab for lab in labels)
    assert "gradxact at layer4" in fig.axes[0].get_title()
    assert draw_curve_figure([{"image_1": {}}]) is None


def test_truth_mask_and_score_text() -> None:
    part_map = torch.tensor([[-1, 0], [1, 2]])
    mask = differing_mask(PartTruth(part_map, torch.tensor([False, True, True])))
    assert mask.tolist() == [[False, False], [True, True]]
    assert _score_text({"precision": 0.5, "recall": None}) == "part precision 0.50, recall n/a"
    assert _score_text({}) == ""


def _job(root: Path, n: int, variant: str, value: float, half: float, chance: float = 0.2) -> None:
    job = root / str(n)
    job.mkdir(parents=True)
    s = {"task": "explain", "status": "ok", "attribution": "gradxact", "variant": variant}
    s |= {"confidence": "softmax", "layer": "layer4", "pairs": 10}
    for key, v, h in (("precision", value, half), ("chance_random_precision", chance, 0.05)):
        s[key], s[f"{key}_ci"], s[f"{key}_n"] = v, [v - h, v + h], 20
    (job / "summary.json").write_text(json.dumps(s))


def test_leaderboard_and_collect_say_tie_and_chance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _job(tmp_path / "a", 0, "a_abar_as", 0.30, 0.15)  # best, but its CI holds the other one and chance
    _job(tmp_path / "a", 1, "a", 0.25, 0.1)
    assert sweeps_main(["leaderboard", str(tmp_path / "a")]) == 0
    last = (tmp_path / "a" / "leaderboard.md").read_text().splitlines()[-1]
    assert last.startswith("Best by precision: gradxact / a_abar_as") and "TIED" in last and "AT CHANCE" in last
    assert last in capsys.readouterr().out
    assert sweeps_main(["collect", str(tmp_path / "a"), "--metric", "precision"]) == 0
    out = capsys.readouterr().out
    assert "best: 0" in out and "TIED" in out and "AT CHANCE" in out
    _job(tmp_path / "b", 0, "a_abar_as", 0.80, 0.02)  # clear of the other setting and of chance
    _job(tmp_path / "b", 1, "a", 0.40, 0.02)
    assert sweeps_main(["leaderboard", str(tmp_path / "b")]) == 0
    last = (tmp_path / "b" / "leaderboard.md").read_text().splitlines()[-1]
    assert "clear of every other setting and of chance" in last and "TIED" not in last
    assert (tmp_path / "b" / "leaderboard.png").stat().st_size > 1000


@pytest.mark.slow
def test_explain_cli_writes_chance_curves_and_figures(tmp_path: Path) -> None:
    assert run_entry("train.py", *TINY, "logger=none", cwd=tmp_path).returncode == 0
    data = tuple(o for o in TINY if o.startswith("data.") and "batch_size" not in o)
    result = run_entry(
        "explain.py",
        *data,
        "max_pairs=2",
        "logger=none",
        "metrics=[parts,deletion]",
        "metric_options.steps=4",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_dir(tmp_path, "explain")
    record = json.loads((run / "explanations.json").read_text())
    item = record["pairs"][0]["image_1"]
    assert len(item["deletion_random_curve"]) == len(item["deletion_curve"]) == 5  # the chance line's data
    for name in ("pr_curve.png", "perturbation_curves.png", "pair_000.png"):
        assert (run / "figures" / name).stat().st_size > 5000
