"""Tests of confidence scores, discriminant maps, segments, the part-based evaluation and ScoutExplainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from scout_exp.attribution import base as base_mod
from scout_exp.errors import UserError
from scout_exp.explain import (
    AREA_FRACTIONS,
    ScoutExplainer,
    complement,
    confidence_map,
    discriminant_map,
    part_iou,
    part_precision_recall,
    parts_inside,
    pr_curve,
    segment_by_area,
    segment_by_threshold,
)
from scout_exp.heads import ConfidenceHead, create_head, list_heads
from scout_exp.heads.certainty import certainty_score
from scout_exp.heads.hardness import easiness_score
from scout_exp.heads.margin import MarginHead, logit_margin
from scout_exp.heads.max_logit import MaxLogitHead
from scout_exp.heads.softmax import softmax_score


class TinyNet(nn.Module):
    def __init__(self, n_classes: int = 5, out: int | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, stride=2)
        self.fc = nn.Linear(6, out or n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(f.mean(dim=(2, 3)))


class TwoHeadNet(TinyNet):
    """Shared trunk: returns (logits, hardness in (0, 1))."""

    def __init__(self) -> None:
        super().__init__(out=6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = super().forward(x)
        return z[:, :5], torch.sigmoid(z[:, 5])


def test_complement_and_discriminant_by_hand() -> None:
    a = torch.tensor([[[1.0, 3.0], [2.0, 0.0]]])
    b = torch.tensor([[[4.0, 1.0], [0.0, 2.0]]])
    s = torch.tensor([[[0.5, 1.0], [2.0, 0.0]]])
    assert torch.equal(complement(b), torch.tensor([[[0.0, 3.0], [4.0, 2.0]]]))
    assert torch.equal(discriminant_map(a, b, variant="a"), a)
    assert torch.equal(discriminant_map(a, b, variant="a_abar"), torch.tensor([[[0.0, 9.0], [8.0, 0.0]]]))
    assert torch.equal(discriminant_map(a, b, s), torch.tensor([[[0.0, 9.0], [16.0, 0.0]]]))
    # negative class/confidence entries are clamped to 0 before the product
    neg = torch.tensor([[[-1.0, 3.0], [2.0, 0.0]]])
    assert discriminant_map(neg, b, -s)[0, 0, 0] == 0
    with pytest.raises(ValueError):
        discriminant_map(a, b, variant="abc")
    with pytest.raises(ValueError):
        discriminant_map(a, b, None, "a_abar_as")


def test_area_fractions_protocol() -> None:
    assert len(AREA_FRACTIONS) == 100
    assert AREA_FRACTIONS[:3] == (0.005, 0.01, 0.02) and AREA_FRACTIONS[-1] == 0.99
    assert all(b > a for a, b in zip(AREA_FRACTIONS, AREA_FRACTIONS[1:]))


@pytest.mark.parametrize("fraction", [0.005, 0.01, 0.1, 0.25, 0.5, 0.99, 1.0])
def test_segment_by_area_exact_counts(fraction: float) -> None:
    torch.manual_seed(0)
    maps = torch.rand(2, 3, 7, 7)
    masks = segment_by_area(maps, fraction, size=(20, 20))
    assert masks.shape == (2, 3, 20, 20) and masks.dtype == torch.bool
    k = int(math.floor(fraction * 400 + 0.5))
    assert (masks.flatten(2).sum(-1) == k).all()
    up = torch.nn.functional.interpolate(maps, size=(20, 20), mode="bilinear", align_corners=False)
    if 0 < k < 400:  # every kept pixel is at least as large as every dropped one
        kept = torch.where(masks, up, torch.inf).flatten(2).amin(-1)
        dropped = torch.where(masks, -torch.inf, up).flatten(2).amax(-1)
        assert (kept >= dropped).all()


def test_segment_by_area_ties_are_deterministic() -> None:
    flat = torch.zeros(4, 5)
    mask = segment_by_area(flat, 0.25)
    assert mask.sum() == 5
    assert mask.flatten()[:5].all()  # lower row-major indices win ties
    peaked = torch.zeros(4, 5)
    peaked[3, 4] = 1.0
    assert segment_by_area(peaked, 0.05)[3, 4]
    with pytest.raises(ValueError):
        segment_by_area(flat, 1.5)


def test_segment_by_threshold() -> None:
    maps = torch.tensor([[0.1, 0.5], [0.7, 0.5]])
    assert torch.equal(segment_by_threshold(maps, 0.5), torch.tensor([[False, False], [True, False]]))


def test_confidence_scores_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    np.testing.assert_allclose(softmax_score(logits).numpy(), [p.max(), 1 / 3], rtol=1e-6)
    expected = 1 + (p * np.log(p)).sum() / np.log(3)
    np.testing.assert_allclose(certainty_score(logits).numpy(), [expected, 0.0], atol=1e-6)
    assert certainty_score(torch.tensor([[50.0, 0.0, 0.0]]))[0] > 0.999
    torch.testing.assert_close(easiness_score(torch.tensor([[0.2], [0.9]])), torch.tensor([0.8, 0.1]))
    torch.testing.assert_close(MaxLogitHead().score(logits), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(logit_margin(logits), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(MarginHead().score(torch.tensor([[0.5, 3.0, 2.5]])), torch.tensor([0.5]))
    with pytest.raises(UserError, match="at least 2 classes"):
        logit_margin(torch.zeros(2, 1))


def test_confidence_map_by_hand() -> None:
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # (1, 2, 1, 2)
    g = torch.tensor([[[[[0.5, -1.0]], [[-2.0, 2.0]]]]])  # (1, 1, 2, 1, 2)
    # pixel 0: 1*0.5 + 3*0 = 0.5; pixel 1: 2*0 + (-1)*2 = -2
    torch.testing.assert_close(confidence_map(f, g), torch.tensor([[[[0.5, -2.0]]]]))


def face_parts() -> tuple[np.ndarray, list[str]]:
    """An 8x8 part map: eyes (4 px each), nose (4 px), mouth (6 px); -1 is background."""
    pm = -np.ones((8, 8), dtype=int)
    pm[1:3, 1:3] = 0  # left_eye
    pm[1:3, 5:7] = 1  # right_eye
    pm[3:5, 3:5] = 2  # nose
    pm[6, 2:8] = 3  # mouth
    return pm, ["left_eye", "right_eye", "nose", "mouth", "ear"]


def test_part_precision_recall_constructed() -> None:
    pm, names = face_parts()
    seg = np.zeros((8, 8), bool)
    seg[1:3, 1:3] = True  # the whole left eye
    seg[3, 3:5] = True  # half the nose
    seg[6, 2:4] = True  # a third of the mouth
    assert parts_inside(seg, pm, names) == {"left_eye", "nose"}
    assert parts_inside(seg, pm, names, min_coverage=0.3) == {"left_eye", "nose", "mouth"}
    assert parts_inside(seg, pm, names, min_coverage=0.75) == {"left_eye"}
    p, r = part_precision_recall(seg, pm, names, {"left_eye", "mouth"})
    assert (p, r) == (0.5, 0.5)
    p, r = part_precision_recall(seg, pm, names, {"right_eye", "ear"})  # ear is not visible
    assert (p, r) == (0.0, 0.0)
    p, r = part_precision_recall(np.zeros((8, 8), bool), pm, names, {"nose"})
    assert math.isnan(p) and r == 0.0
    _, r = part_precision_recall(seg, pm, names, {"ear"})
    assert math.isnan(r)
    with pytest.raises(UserError, match="not in part_names"):
        part_precision_recall(seg, pm, names, {"tail"})
    with pytest.raises(UserError, match="same shape"):
        part_precision_recall(seg[:4], pm, names, {"nose"})


def test_pr_curve_on_a_map_that_points_at_the_nose() -> None:
    pm, names = face_parts()
    amap = np.zeros((4, 4))
    amap[1:3, 1:3] = 1.0  # the centre of the face, i.e. the nose after resizing to 8x8
    precision, recall = pr_curve(amap, pm, names, {"nose"}, fractions=(0.0625, 1.0))
    assert precision[0] == 1.0 and recall[0] == 1.0  # top 4 pixels = the nose exactly
    assert recall[1] == 1.0 and precision[1] == 0.25  # the whole image covers all 4 parts


def test_part_iou() -> None:
    assert part_iou({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert part_iou({"a"}, {"a"}) == 1.0
    assert math.isnan(part_iou(set(), set()))


def direct_map(model: nn.Module, x: torch.Tensor, q_fn, positive: bool = False) -> torch.Tensor:
    """Gradient x activation at conv2's output with plain autograd (ReLU(g) when positive)."""
    kept = {}
    h = model.conv2.register_forward_hook(lambda _m, _i, o: kept.update(f=o))
    q = q_fn(model(x))
    h.remove()
    (g,) = torch.autograd.grad(q.sum(), kept["f"])
    if positive:
        g = torch.relu(g)
    return (g * kept["f"]).sum(1).detach()


def test_scout_explainer_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(3, 3, 8, 8)
    calls = []
    real = base_mod.layer_gradients
    monkeypatch.setattr("scout_exp.explain.scout.layer_gradients", lambda *a, **k: calls.append(1) or real(*a, **k))
    exp = ScoutExplainer(model, "gradxact", "conv2", head="softmax").explain(x)
    assert len(calls) == 1
    logits = model(x).detach()
    top2 = logits.topk(2, dim=1).indices
    assert torch.equal(exp.y_star, top2[:, 0]) and torch.equal(exp.y_counter, top2[:, 1])
    torch.testing.assert_close(exp.probs, logits.softmax(1))
    torch.testing.assert_close(exp.confidence, logits.softmax(1).amax(1))
    rows = torch.arange(3)
    cls = direct_map(model, x, lambda o: o[rows, top2[:, 0]]).clamp_min(0)
    ctr = direct_map(model, x, lambda o: o[rows, top2[:, 1]]).clamp_min(0)
    conf = direct_map(model, x, lambda o: o.softmax(1).amax(1), positive=True)
    assert exp.class_map.shape == (3, 4, 4)
    torch.testing.assert_close(exp.class_map.clamp_min(1e-7), cls.clamp_min(1e-7), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(exp.counter_map.clamp_min(1e-7), ctr.clamp_min(1e-7), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(exp.confidence_map, conf, atol=1e-6, rtol=1e-4)
    expected = exp.class_map * (exp.counter_map.amax((1, 2), keepdim=True) - exp.counter_map) * conf.clamp_min(0)
    torch.testing.assert_close(exp.discriminant, expected, atol=1e-7, rtol=1e-4)
    assert set(exp.variants) == {"a", "a_abar", "a_abar_as"}
    assert torch.equal(exp.variants["a"], exp.class_map)


def test_scout_explainer_certainty_and_given_classes() -> None:
    torch.manual_seed(1)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    exp = ScoutExplainer(model, "gradcam", "conv2", head="certainty").explain(x, 2, torch.tensor([0, 4]))
    assert exp.y_star.tolist() == [2, 2] and exp.y_counter.tolist() == [0, 4]
    p = model(x).detach().softmax(1).double()
    torch.testing.assert_close(exp.confidence.double(), 1 + (p * p.log()).sum(1) / math.log(5), atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="differ"):
        ScoutExplainer(model, target_layer="conv2").explain(x, 1, 1)
    with pytest.raises(UserError, match="outside"):
        ScoutExplainer(model, target_layer="conv2").explain(x, 7)
    with pytest.raises(UserError, match="unknown confidence head 'entropy'"):
        ScoutExplainer(model, head="entropy")
    with pytest.raises(UserError, match="objective=hardness"):
        ScoutExplainer(model, head="hardness")  # no predictor attached


class _TupleHead(ConfidenceHead):
    """A head reading (logits, s^hp) from a two-output network (the protocol, outside the registry)."""

    name = "tuple_test"

    def logits(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return out[0]

    def score(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return 1 - out[1]


class _NetworkHead(ConfidenceHead):
    """A head with a network of its own: s = 1 - predictor(x)."""

    name = "network_test"

    def __init__(self, predictor: nn.Module) -> None:
        self.network = predictor

    def score(self, out: torch.Tensor) -> torch.Tensor:
        return 1 - out[:, 0]


def test_scout_explainer_hardness_shared_and_separate() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 8)
    shared = TwoHeadNet().eval()
    exp = ScoutExplainer(shared, "gradxact", "conv2", head=_TupleHead()).explain(x)
    logits, hard = shared(x)
    torch.testing.assert_close(exp.confidence, 1 - hard.detach())
    conf = direct_map(shared, x, lambda o: 1 - o[1], positive=True)
    torch.testing.assert_close(exp.confidence_map, conf, atol=1e-6, rtol=1e-4)
    assert torch.equal(exp.y_star, logits.detach().argmax(1))

    model = TinyNet().eval()
    predictor = nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1), nn.Sigmoid()
    ).eval()
    exp = ScoutExplainer(model, "gradxact", "conv2", head=_NetworkHead(predictor)).explain(x)
    torch.testing.assert_close(exp.confidence, 1 - predictor(x).detach()[:, 0])
    assert exp.confidence_map.shape == exp.class_map.shape == (2, 4, 4)  # 8x8 map resized to 4x4


def test_counterfactual_swaps_the_classes() -> None:
    torch.manual_seed(3)
    model = TinyNet().eval()
    x, xc = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    explainer = ScoutExplainer(model, target_layer="conv2")
    first, second = explainer.counterfactual(x, xc)
    assert torch.equal(first.y_star, model(x).argmax(1))
    assert torch.equal(second.y_star, first.y_counter) and torch.equal(second.y_counter, first.y_star)
    assert (first.y_star != first.y_counter).all()
    again = explainer.explain(xc, first.y_counter, first.y_star)
    torch.testing.assert_close(again.discriminant, second.discriminant)
    with pytest.raises(UserError, match="as many"):
        explainer.counterfactual(x, xc[:1])


def test_scout_explainer_with_an_adapter() -> None:
    torch.manual_seed(4)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    exp = ScoutExplainer(model, "pgc:GradCAM", "conv2").explain(x)
    assert exp.class_map.shape == exp.confidence_map.shape == (2, 8, 8)
    torch.testing.assert_close(exp.confidence, model(x).detach().softmax(1).amax(1))


@pytest.mark.parametrize("name", ["softmax", "certainty", "max_logit", "margin"])
def test_every_output_head_explains_with_its_score_in_one_engine_pass(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each registered head that reads the classifier's output: s(x) and a(s) as computed by hand."""
    torch.manual_seed(3)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    calls = []
    real = base_mod.layer_gradients
    monkeypatch.setattr("scout_exp.explain.scout.layer_gradients", lambda *a, **k: calls.append(1) or real(*a, **k))
    head = create_head(name)
    exp = ScoutExplainer(model, "gradxact", "conv2", head=head).explain(x)
    assert len(calls) == 1
    torch.testing.assert_close(exp.confidence, head.score(model(x)).detach())
    conf = direct_map(model, x, lambda o: head.score(o), positive=True)
    torch.testing.assert_close(exp.confidence_map, conf, atol=1e-6, rtol=1e-4)


def test_head_registry_matches_the_config_group() -> None:
    from scout_exp.config import CONFIG_DIR

    assert list_heads() == sorted(p.stem for p in (CONFIG_DIR / "head").glob("*.yaml"))
    assert "tuple_test" not in list_heads()  # heads defined outside scout_exp.heads are not registered


def test_attribution_options_reach_the_method_from_the_config() -> None:
    """attribution.kwargs (configs/attribution/*.yaml) reach the method's constructor; unknown ones are one line."""
    from scout_exp.cli import check_overrides

    cfg = check_overrides("explain", ["attribution=gradxact", "attribution.kwargs.clamp_negative=false"])
    options = dict(cfg.attribution.kwargs)
    torch.manual_seed(4)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 8, 8)
    signed = ScoutExplainer(model, "gradxact", "conv2", attribution_options=options)
    assert signed.attribution.clamp_negative is False
    rows = torch.arange(2)
    top = model(x).argmax(1)
    expected = direct_map(model, x, lambda o: o[rows, top])
    torch.testing.assert_close(signed.explain(x).class_map, expected, atol=1e-6, rtol=1e-4)  # negatives kept
    with pytest.raises(UserError, match="attribution gradcam has no option eps; its options"):
        ScoutExplainer(model, "gradcam", "conv2", attribution_options={"eps": 1e-3})
