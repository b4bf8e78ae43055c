"""Explanation metrics against hand computations on tiny models whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from scout_exp.errors import UserError
from scout_exp.explain.evaluation import part_precision_recall
from scout_exp.explain.segments import AREA_FRACTIONS, segment_by_area
from scout_exp.metrics import (
    BatchContext,
    build_metrics,
    check_metrics,
    margin_fn,
    metric_names,
    perturbation_curves,
    score_batch,
)
from scout_exp.metrics.chance import centre_prior
from scout_exp.metrics.parts import part_mass, pr_curves, segment_precision_recall, top_pixels
from scout_exp.metrics.perturbation import baseline_images, batch_scores
from scout_exp.metrics.randomisation import cascading_randomisation
from scout_exp.metrics.road import road_curves
from scout_exp.metrics.stats import mean_ci, summarise

H = W = 16
NAMES = ("p0", "p1", "p2")


def _part_map() -> torch.Tensor:
    """p0: rows 0-3, p1: rows 4-7, p2: rows 8-11, background below."""
    pm = torch.full((H, W), -1, dtype=torch.long)
    for k in range(3):
        pm[4 * k : 4 * k + 4] = k
    return pm


class ReadsPart0(nn.Module):
    """logit_0 = 10 * mean of channel 0 over part p0's pixels; logit_1 = 0: only p0 matters."""

    def __init__(self) -> None:
        super().__init__()
        self.mask = (_part_map() == 0).float()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = (x[:, 0] * self.mask).sum((1, 2)) / self.mask.sum()
        return torch.stack([10 * v, torch.zeros_like(v)], 1)


def test_pr_curves_from_one_sort_match_the_per_fraction_protocol() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 4, 4, generator=gen)
    pm = torch.stack([_part_map()] * 3)
    disc = torch.tensor([[True, False, False], [False, True, True], [True, True, False]])
    prec, rec, _ = pr_curves(maps, pm, disc, AREA_FRACTIONS)
    for i in range(3):
        for j, f in enumerate(AREA_FRACTIONS[::7]):
            seg = segment_by_area(maps[i], f, size=(H, W))
            want = part_precision_recall(seg, pm[i], NAMES, [n for n, d in zip(NAMES, disc[i]) if d])
            got = (float(prec[i, 7 * j]), float(rec[i, 7 * j]))
            np.testing.assert_allclose(got, want, equal_nan=True)


def test_top_pixels_is_the_head_of_a_stable_descending_sort() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randint(0, 4, (6, H, W), generator=gen).float()  # many ties
    maps[0] = 0.0  # flat
    maps[1] = torch.rand(H, W, generator=gen)  # none
    for k in (0, 1, 7, 64, H * W - 1, H * W):
        order = torch.sort(maps.reshape(6, -1), dim=1, descending=True, stable=True).indices[:, :k]
        want = torch.zeros(6, H * W, dtype=torch.bool).scatter_(1, order, True).reshape(6, H, W)
        assert torch.equal(top_pixels(maps, k), want), k


def test_segment_scores_equal_one_fraction_of_the_pr_curve() -> None:
    gen = torch.Generator().manual_seed(2)
    maps = torch.randint(0, 3, (4, H, W), generator=gen).float()
    pm = torch.stack([_part_map()] * 4)
    pm[1, :2] = -1  # p0 half hidden
    disc = torch.rand(4, 3, generator=gen) > 0.5
    for f in (0.05, 0.1, 0.3):
        prec, rec, inside = pr_curves(maps, pm, disc, [f])
        got = segment_precision_recall(segment_by_area(maps, f), pm, disc)
        np.testing.assert_array_equal(got[0].numpy(), prec[:, 0].numpy())
        np.testing.assert_array_equal(got[1].numpy(), rec[:, 0].numpy())
        assert torch.equal(got[2], inside[:, 0])


def test_part_mass_is_the_share_of_the_map_on_each_part() -> None:
    maps = torch.zeros(1, H, W)
    maps[0, 0:4] = 1.0  # all on p0
    maps[0, 4:6] = 1.0  # half of p1's rows
    mass = part_mass(maps, _part_map()[None], 3)
    np.testing.assert_allclose(mass[0].numpy(), [4 / 6, 2 / 6, 0.0])


def _scores(
    maps: torch.Tensor, metrics: list[str], options: dict[str, object] | None = None, **kw: object
) -> list[dict[str, object]]:
    model = ReadsPart0()
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    pm = torch.stack([_part_map()] * 2)
    disc = torch.tensor([[True, True, False], [True, True, False]])
    switched = [{0: x[i] * 0.2, 1: x[i].flip(-1)} for i in range(2)]  # swap p0 and p1 (whole image here)
    for i in range(2):
        switched[i][0] = torch.where(pm[i] == 0, 0.2 * x[i], x[i])
        switched[i][1] = torch.where(pm[i] == 1, 1 - x[i], x[i])
    score = margin_fn(model, torch.tensor([0, 0]), torch.tensor([1, 1]))
    options = dict(area_fraction=0.25, steps=8, deletion_baseline="zero", insertion_baseline="zero") | (options or {})
    return score_batch(
        build_metrics(metrics, options),
        BatchContext(
            images=x,
            maps=maps,
            part_names=NAMES,
            score_fn=score,
            part_maps=pm,
            discriminative=disc,
            switched=switched,
            **kw,
        ),
    )


def test_interventions_find_the_one_part_the_model_reads() -> None:
    perfect = (_part_map() == 0).float()[None].repeat(2, 1, 1) + 0.01 * torch.rand(2, H, W)
    wrong = (_part_map() == 1).float()[None].repeat(2, 1, 1) + 0.01 * torch.rand(2, H, W)
    good, bad = _scores(perfect, ["parts", "interventions"]), _scores(wrong, ["interventions"])
    for rec in good:
        assert rec["part_effects"]["p1"] == 0.0 and rec["part_effects"]["p0"] > 0  # only p0 moves the margin
        assert rec["top_part_hit"] == 1.0 and rec["intervention_spearman"] > 0.8
        assert rec["precision"] == 1.0 and rec["chance_face_precision"] == pytest.approx(2 / 3)
        assert rec["parts_in_segment"] == ["p0"]
    for rec in bad:
        assert rec["top_part_hit"] == 0.0 and rec["intervention_spearman"] <= 0


def test_perfect_map_deletes_faster_than_a_random_map() -> None:
    perfect = (_part_map() == 0).float()[None].repeat(2, 1, 1) + 0.01 * torch.rand(2, H, W)
    for rec in _scores(perfect, ["deletion", "insertion"]):
        assert rec["deletion_auc"] < rec["chance_random_deletion_auc"]
        assert rec["insertion_auc"] > rec["chance_random_insertion_auc"]
        assert len(rec["deletion_curve"]) == 9


def test_centre_prior_chance_rows_of_the_curve_metrics() -> None:
    """``curve_chance=[random,centre]``: the centre prior's AUCs are its own map's curves."""
    perfect = (_part_map() == 0).float()[None].repeat(2, 1, 1) + 0.01 * torch.rand(2, H, W)
    options = {"curve_chance": ("random", "centre"), "road_fractions": (0.25, 0.5), "road_noise": 0.0}
    records = _scores(perfect, ["deletion", "road"], options)
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(1))  # the images of _scores
    score = margin_fn(ReadsPart0(), torch.tensor([0, 0]), torch.tensor([1, 1]))
    centre = centre_prior(2, (H, W), (0.5, 0.55), 0.25)
    _, deletion = perturbation_curves(score, x, centre, mode="deletion", baseline="zero", steps=8)
    _, road = road_curves(score, x, centre, fractions=(0.25, 0.5), noise=0.0)
    for i, rec in enumerate(records):
        assert rec["chance_centre_deletion_auc"] == pytest.approx(float(deletion[i]), abs=1e-5)
        assert rec["chance_centre_road_auc"] == pytest.approx(float(road[i]), abs=1e-5)
        assert rec["chance_random_deletion_auc"] is not None and "chance_face_deletion_auc" not in rec


def test_deletion_curve_by_hand() -> None:
    """Score = sum of the image; deleting 1/4 of a constant image per step loses 1/4 of the score."""
    x = torch.ones(1, 1, 4, 4)
    maps = torch.arange(16.0).reshape(1, 4, 4)
    curves, auc = perturbation_curves(lambda z, i: z.sum((1, 2, 3)), x, maps, mode="deletion", baseline="zero", steps=4)
    np.testing.assert_allclose(curves[0].numpy(), [16, 12, 8, 4, 0])
    assert float(auc[0]) == pytest.approx(8.0)
    _, ins = perturbation_curves(lambda z, i: z.sum((1, 2, 3)), x, maps, mode="insertion", baseline="zero", steps=4)
    assert float(ins[0]) == pytest.approx(8.0)


def test_curves_reuse_the_shared_end_scores() -> None:
    """Both ends of every curve are the image and its baseline: scored once, the same curves."""
    x = torch.rand(3, 2, 12, 11, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(3, 3, 2, generator=torch.Generator().manual_seed(1))
    calls: list[int] = []

    def score(z: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        calls.append(len(z))
        return (z * (i[:, None, None, None] + 1)).square().mean((1, 2, 3))

    for mode, baseline in (("deletion", "zero"), ("insertion", "blur")):
        base = baseline_images(x, baseline)
        ends = torch.stack([batch_scores(score, x, 4), batch_scores(score, base, 4)], 1)
        calls.clear()
        shared = perturbation_curves(score, x, maps, mode=mode, steps=5, batch_size=4, ends=ends)
        assert sum(calls) == 3 * 4  # the inner stages only
        alone = perturbation_curves(score, x, maps, mode=mode, steps=5, batch_size=4)  # RISE's baseline of the mode
        torch.testing.assert_close(shared, alone)


def test_randomisation_changes_gradient_maps_and_restores_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 2)
    )
    x = torch.rand(3, 3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def grad_map(z: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[:, 0].sum(), z)
        return (g * z).sum(1)

    names, rho, rho_abs = cascading_randomisation(model, grad_map, x)
    assert names == ["4", "2", "0"] and rho.shape == (3, 3) and rho_abs.shape == (3, 3)
    assert float(rho[:, -1].abs().mean()) < 0.5  # fully randomised: unrelated maps
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    # an "edge detector" that ignores the model stays perfectly correlated
    _, rho_edge, _ = cascading_randomisation(model, lambda z: z[:, 0], x)
    np.testing.assert_allclose(rho_edge.numpy(), 1.0)


def test_bootstrap_ci_against_scipy_and_summary() -> None:
    from scipy.stats import bootstrap

    vals = np.random.default_rng(0).normal(0.5, 0.1, 60)
    mean, lo, hi, n = mean_ci(list(vals) + [math.nan])
    ref = bootstrap((vals,), np.mean, n_resamples=2000, method="percentile", rng=0).confidence_interval
    assert n == 60 and mean == pytest.approx(vals.mean()) and (lo, hi) == pytest.approx((ref.low, ref.high))
    assert lo < mean < hi and hi - lo < 0.08
    assert mean_ci([0.3, 0.3]) == (0.3, 0.3, 0.3, 2)
    out = summarise([{"precision": 1.0, "class": 3}, {"precision": 0.0}, {"precision": None}])
    assert out["precision"] == 0.5 and out["precision_n"] == 2 and "class" not in out


def test_bad_metric_names() -> None:
    with pytest.raises(UserError, match="unknown metric 'bogus'; choose one of: deletion, insertion, interventions"):
        check_metrics(["bogus"], True, "FaceParts")
    with pytest.raises(UserError, match=r"'interventions' needs part annotations and pairs.csv has none; .*FaceParts"):
        check_metrics(["deletion", "interventions"], False, "pairs.csv")
    assert check_metrics([*metric_names(), "parts"], True, "FaceParts") == metric_names()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"deletion_baseline": "black"}, "unknown deletion_baseline 'black'; choose one of: blur, zero, mean"),
        ({"steps": 0}, r"metric_options.steps must be >= 1, got 0"),
        ({"chance_draws": 0}, r"metric_options.chance_draws must be >= 1"),
        ({"road_fractions": (0.5, 1.0)}, r"road_fractions must be a non-empty list of shares in \(0, 1\)"),
        ({"road_fractions": ()}, r"road_fractions must be a non-empty list"),
        ({"road_fractions": 0.5}, r"road_fractions must be a non-empty list"),
        ({"road_noise": -1.0}, r"road_noise is a standard deviation and must be >= 0"),
        ({"step": 4}, r"unknown metric_options step; choose from: .*steps"),
        ({"curve_chance": ("random", "face")}, r"curve_chance is a list of chance maps from: random, centre"),
        ({"curve_chance": "centre"}, r"curve_chance is a list of chance maps"),
    ],
)
def test_bad_metric_options(options: dict[str, object], expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        build_metrics(metric_names(), options, area_fraction=0.1)
