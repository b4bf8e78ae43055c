"""Verification maps of every attribution method against hand autograd; RISE against brute force; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scout_exp.attribution.base import normalise, upsample
from scout_exp.attribution.rise import RISE, rise_masks
from scout_exp.errors import UserError
from scout_exp.explain.verification import VerificationExplainer, pair_record, side_record


class TinyEmbedder(nn.Module):
    """conv -> ReLU -> ``feat`` (1x1 conv) -> flatten -> linear: a descriptor with a reachable layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.feat = nn.Conv2d(4, 5, 1)
        self.head = nn.Linear(5 * 6 * 6, 8)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.feat(torch.relu(self.conv(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.trunk(x)).flatten(1))


def _hand(net: TinyEmbedder, x: torch.Tensor, partner: torch.Tensor, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations A and d(sign * cos(f(x), partner))/dA, by plain autograd on the split network."""
    a = net.trunk(x).detach().requires_grad_(True)
    q = (F.normalize(net.head(torch.relu(a).flatten(1)), dim=1) * partner).sum()
    (g,) = torch.autograd.grad(sign * q, a)
    return a.detach(), g


HAND = {
    "gradxact": lambda a, g: (g * a).sum(1),
    "hirescam": lambda a, g: (g * a).sum(1),
    "gradcam": lambda a, g: torch.relu((g.mean(dim=(-2, -1), keepdim=True) * a).sum(1)),
    "layercam": lambda a, g: torch.relu((torch.relu(g) * a).sum(1)),
    "gradcampp": lambda a, g: torch.relu(
        (
            (torch.nan_to_num(g**2 / (2 * g**2 + a.sum(dim=(-2, -1), keepdim=True) * g**3)) * torch.relu(g)).sum(
                dim=(-2, -1), keepdim=True
            )
            * a
        ).sum(1)
    ),
    "captum:LayerGradientXActivation": lambda a, g: (g * a).sum(1),
}


@pytest.mark.parametrize("method", sorted(HAND))
def test_similarity_maps_match_hand_autograd(method: str) -> None:
    net = TinyEmbedder().eval()
    gen = torch.Generator().manual_seed(1)
    probe, ref = torch.randn(2, 3, 6, 6, generator=gen), torch.randn(2, 3, 6, 6, generator=gen)
    e = VerificationExplainer(net, "feat", method).explain(probe, ref)
    units = F.normalize(net(torch.cat([probe, ref])).detach(), dim=1)
    for side, (x, partner) in enumerate(((probe, units[2:]), (ref, units[:2]))):
        for sign, maps in ((1.0, e.similar[side]), (-1.0, e.different[side])):
            expected = torch.relu(HAND[method](*_hand(net, x, partner, sign)))
            torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(e.cosine, (units[:2] * units[2:]).sum(1))


def test_pgc_gradcam_agrees_with_the_engine_up_to_its_normalisation() -> None:
    net = TinyEmbedder().eval()
    gen = torch.Generator().manual_seed(2)
    probe, ref = torch.randn(1, 3, 6, 6, generator=gen), torch.randn(1, 3, 6, 6, generator=gen)
    ours = VerificationExplainer(net, "feat", "gradcam").explain(probe, ref)
    theirs = VerificationExplainer(net, "feat", "pgc:GradCAM").explain(probe, ref)
    for evidence in ("similar", "different"):
        mine = normalise(upsample(normalise(getattr(ours, evidence)), (6, 6)))
        torch.testing.assert_close(mine, getattr(theirs, evidence), atol=1e-4, rtol=1e-4)


def test_rise_matches_brute_force_estimator() -> None:
    net = TinyEmbedder().eval()
    gen = torch.Generator().manual_seed(3)
    probe, ref = torch.randn(2, 3, 6, 6, generator=gen), torch.randn(2, 3, 6, 6, generator=gen)
    explainer = VerificationExplainer(net, None, "rise", masks=40, grid=3, keep=0.4, batch_size=7, seed=5)
    e = explainer.explain(probe, ref)
    masks = rise_masks(40, 3, 0.4, (6, 6), torch.Generator().manual_seed(5))
    assert set(masks.unique().tolist()) - {0.0, 1.0} and masks.min() >= 0 and masks.max() <= 1
    units = F.normalize(net(torch.cat([probe, ref])).detach(), dim=1)
    partner = torch.cat([units[2:], units[:2]])
    x = torch.cat([probe, ref])
    for i in range(4):  # S = 1/(N p) sum_n (s_n - mean s) M_n, one mask at a time
        with torch.no_grad():
            s = [float(F.normalize(net(x[i : i + 1] * masks[n]), dim=1)[0] @ partner[i]) for n in range(40)]
        expected = sum((s[n] - np.mean(s)) * masks[n] for n in range(40)) / (40 * 0.4)
        side, b = divmod(i, 2)
        torch.testing.assert_close(e.similar[side, b] - e.different[side, b], expected.float(), atol=1e-5, rtol=1e-4)


def test_rise_needs_only_an_embed_function() -> None:
    weight = torch.randn(3 * 8 * 8, 4, generator=torch.Generator().manual_seed(4))
    embed = lambda x: x.flatten(1) @ weight  # noqa: E731 - a matcher with no layers to hook
    probe = torch.randn(1, 3, 8, 8)
    e = VerificationExplainer(embed, None, "rise", masks=16, grid=2).explain(probe, probe.flip(-1))
    assert e.similar.shape == (2, 1, 8, 8) and (e.similar + e.different).sum() > 0
    seen = RISE(lambda x: x.sum(dim=(1, 2, 3)), masks=8, grid=2)(probe, lambda out: out)
    assert seen.shape == (1, 1, 8, 8)


def test_a_photo_against_itself_is_degenerate() -> None:
    net = TinyEmbedder().eval()
    probe = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(6))
    e = VerificationExplainer(net, "feat", "gradxact").explain(probe, probe.clone())
    record = pair_record(e, 0, threshold=None)
    assert e.degenerate().all()
    assert record["probe"]["degenerate"] and record["probe"]["similar_share"] is None
    assert side_record(np.ones((2, 2)), np.zeros((2, 2)))["similar_share"] == 1.0


def test_bad_method_requests_are_one_line() -> None:
    net = TinyEmbedder()
    with pytest.raises(UserError, match="black-box method.*drop attribution.layer=feat"):
        VerificationExplainer(net, "feat", "rise")
    with pytest.raises(UserError, match="keep probability"):
        VerificationExplainer(net, None, "rise", keep=1.0)
    with pytest.raises(
        UserError, match="use a black-box method: attribution=corrrise or attribution=occlusion or attribution=rise"
    ):
        VerificationExplainer(lambda x: x.flatten(1), None, "gradcam")


@pytest.mark.slow
def test_verify_bench_times_every_method() -> None:
    from scout_exp.bench import verify as bench_verify

    result = bench_verify.main(batch=1, size=32, repeats=1, masks=4)
    assert set(result["methods"]) == set(bench_verify.METHODS)
    assert all(r["wall_s_per_pair"] > 0 for r in result["methods"].values())
