"""Interpretable-FR losses, synthetic occlusion and peak locations against hand computations."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from scout_exp.errors import UserError
from scout_exp.interp.losses import (
    InterpLossWeights,
    feature_activation_diversity,
    filter_diversity,
    interp_total_loss,
    spatial_activation_diversity,
)
from scout_exp.interp.occlusion import (
    OCCLUDER_X_RANGE,
    OCCLUDER_Y_RANGE,
    REFERENCE_LANDMARKS_110,
    landmarks68_to_5,
    occlude_parts,
    occlude_with_landmarks,
    occluder_masks,
    random_occluder_position,
)
from scout_exp.interp.peaks import mean_face, peak_locations, plot_peaks
from scout_exp.models.casianet import InterpOutput

G = np.array([[0.0947416, 0.118318, 0.0947416], [0.118318, 0.147761, 0.118318], [0.0947416, 0.118318, 0.0947416]])


def _cos2(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b) ** 2 / (float(a @ a) * float(b @ b))


def _hand_sad(maps: np.ndarray) -> float:
    b, c, h, w = maps.shape
    per_sample = []
    for n in range(b):
        smooth = []
        for k in range(c):
            padded = np.pad(maps[n, k], 1)
            s = np.array([[np.sum(padded[i : i + 3, j : j + 3] * G) for j in range(w)] for i in range(h)])
            smooth.append(s.ravel())
        pairs = [_cos2(smooth[i], smooth[j]) for i, j in itertools.combinations(range(c), 2)]
        per_sample.append(np.mean(pairs))
    return float(np.mean(per_sample))


def test_sad_matches_hand_computation() -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(2, 4, 5, 6))
    got = spatial_activation_diversity(torch.tensor(maps))
    assert float(got) == pytest.approx(_hand_sad(maps), rel=1e-10)


def test_sad_extremes() -> None:
    far_apart = torch.zeros(1, 2, 8, 8)
    far_apart[0, 0, 1, 1] = 3.0
    far_apart[0, 1, 6, 6] = -2.0
    assert float(spatial_activation_diversity(far_apart)) == 0.0
    same = torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8)
    assert float(spatial_activation_diversity(same)) == pytest.approx(1.0)


def test_filter_diversity_matches_hand_computation() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 5, 3, 3))
    expected = []
    for f in range(3):
        taps = [w[f, :, i, j] for i in range(3) for j in range(3)]
        pairs = [_cos2(taps[a], taps[b]) for a, b in itertools.combinations(range(9), 2)]
        assert len(pairs) == 36
        expected.append(np.mean(pairs))
    assert float(filter_diversity(torch.tensor(w))) == pytest.approx(float(np.mean(expected)), rel=1e-10)
    orthogonal = torch.eye(9).reshape(9, 3, 3).unsqueeze(0)  # tap k = unit vector e_k
    assert float(filter_diversity(orthogonal)) == 0.0
    assert float(filter_diversity(torch.ones(2, 4, 3, 3))) == pytest.approx(1.0)


def test_fad_loss_and_mask() -> None:
    f = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    f_occ = torch.tensor([[1.5, 2.0, 0.0, 4.2, 9.0], [0.0, -1.0, 1.0, 0.0, 0.0]])
    # Delta = mean |f - f_occ| = [0.25, 0.5, 2.0, 0.1, 2.0]
    loss, sensitive = feature_activation_diversity(f, f_occ, n_invariant=3)
    assert float(loss) == pytest.approx(0.1 * (0.1 + 0.25 + 0.5))
    assert sensitive.tolist() == [False, False, True, False, True]
    # a tie at the cut: exactly n_invariant invariant features, the lower index wins
    loss, sensitive = feature_activation_diversity(f, f_occ, n_invariant=4)
    assert sensitive.tolist() == [False, False, False, False, True]
    assert float(loss) == pytest.approx(0.1 * (0.1 + 0.25 + 0.5 + 2.0))


def test_total_loss_combines_terms() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 3)
    w = torch.randn(4, 5, 3, 3, requires_grad=True)

    def out(seed: int) -> InterpOutput:
        g = torch.Generator().manual_seed(seed)
        masked = torch.randn(2, 6, 4, 4, generator=g, requires_grad=True)
        feat = masked.mean(dim=(2, 3))
        return InterpOutput(lin(feat), feat, masked, masked)

    clean, occ = out(1), out(2)
    labels = torch.tensor([0, 2])
    weights = InterpLossWeights(ce_clean=2, ce_occluded=3, filter=100, sad_clean=1, sad_occluded=0.5, fad=1)
    total, terms = interp_total_loss(clean, labels, w, occ, lin, weights, n_invariant=4)
    fad, sensitive = feature_activation_diversity(clean.feature, occ.feature, 4)
    ce = torch.nn.functional.cross_entropy
    expected = (
        2 * ce(clean.logits, labels)
        + 3 * ce(lin(occ.feature * (~sensitive).float()), labels)
        + 100 * filter_diversity(w)
        + spatial_activation_diversity(clean.masked_map)
        + 0.5 * spatial_activation_diversity(occ.masked_map)
        + fad
    )
    torch.testing.assert_close(total, expected)
    assert set(terms) == {"ce_clean", "ce_occluded", "filter", "sad_clean", "sad_occluded", "fad"}
    total.backward()
    assert w.grad is not None and clean.masked_map.grad is not None and occ.masked_map.grad is not None

    base, base_terms = interp_total_loss(clean, labels, weights=InterpLossWeights(2, 0, 0, 0, 0, 0))
    torch.testing.assert_close(base, 2 * ce(clean.logits, labels))
    assert set(base_terms) == {"ce_clean"}
    with pytest.raises(ValueError):
        interp_total_loss(clean, labels, w)  # occluded terms on, no occluded output


def _rect_mask(h: int, w: int, x0: int, y0: int, bw: int, bh: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0 : y0 + bh, x0 : x0 + bw] = True
    return m


def test_reference_template_is_arcface_in_110_frame() -> None:
    arcface = torch.tensor(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
    )
    torch.testing.assert_close(REFERENCE_LANDMARKS_110, arcface * 96 / 112 + 7, atol=1e-4, rtol=0)


def test_occluder_identity_shift_and_scale() -> None:
    ref = REFERENCE_LANDMARKS_110
    ident = occluder_masks(ref[None], (110, 110), (20, 40))
    assert torch.equal(ident[0], _rect_mask(110, 110, 20, 40, 32, 12))
    shifted = occluder_masks((ref + torch.tensor([5.0, -3.0]))[None], (110, 110), (20, 40))
    assert torch.equal(shifted[0], _rect_mask(110, 110, 25, 37, 32, 12))
    half = occluder_masks((ref * 0.5)[None], (55, 55), (20, 40))
    assert torch.equal(half[0], _rect_mask(55, 55, 10, 20, 16, 6))
    # 96x96 crop at offset (7, 7): landmarks move by -7, the rectangle too
    crop = occluder_masks((ref - 7)[None], (96, 96), (30, 50))
    assert torch.equal(crop[0], _rect_mask(96, 96, 23, 43, 32, 12))


def test_occluder_rotation_moves_rectangle_centre() -> None:
    ref = REFERENCE_LANDMARKS_110.double()
    centre = torch.tensor([55.0, 55.0], dtype=torch.float64)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # 90 degrees
    lm = (ref - centre) @ rot.T + centre
    mask = occluder_masks(lm[None], (110, 110), (40, 20))[0]
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert mask.sum() == 32 * 12
    rect_centre = torch.tensor([40 + 16.0, 20 + 6.0], dtype=torch.float64)
    expected = (rect_centre - centre) @ rot.T + centre
    got = torch.stack([xs.double().mean() + 0.5, ys.double().mean() + 0.5])
    torch.testing.assert_close(got, expected)
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (12, 32)  # rotated: tall and thin


def test_68_landmarks() -> None:
    torch.manual_seed(0)
    lm68 = torch.rand(68, 2) * 80 + 10
    five = landmarks68_to_5(lm68[None])[0]
    torch.testing.assert_close(five[0], lm68[36:42].mean(0))
    torch.testing.assert_close(five[4], lm68[54])
    # with a 68-point reference, an image whose landmarks are the reference shifted by (4, 6)
    mask = occluder_masks((lm68 + torch.tensor([4.0, 6.0]))[None], (110, 110), (20, 30), reference=lm68)
    assert torch.equal(mask[0], _rect_mask(110, 110, 24, 36, 32, 12))


def test_occlude_with_landmarks_fills_black_and_shares_position() -> None:
    images = torch.rand(3, 3, 110, 110) * 2 - 1
    lm = REFERENCE_LANDMARKS_110[None].repeat(3, 1, 1)
    lm[1] += torch.tensor([2.0, 1.0])
    out, masks = occlude_with_landmarks(images, lm, generator=torch.Generator().manual_seed(3))
    assert (out[masks.unsqueeze(1).expand_as(out)] == -1).all()
    torch.testing.assert_close(out[~masks.unsqueeze(1).expand_as(out)], images[~masks.unsqueeze(1).expand_as(out)])
    assert torch.equal(masks[0], masks[2])
    assert torch.equal(masks[1], torch.roll(masks[0], shifts=(1, 2), dims=(0, 1)))
    for seed in range(20):
        x, y = random_occluder_position(torch.Generator().manual_seed(seed))
        assert OCCLUDER_X_RANGE[0] <= x <= OCCLUDER_X_RANGE[1] and OCCLUDER_Y_RANGE[0] <= y <= OCCLUDER_Y_RANGE[1]
    with pytest.raises(UserError):
        occlude_with_landmarks(images, torch.zeros(3, 7, 2))


def test_occlude_parts_bbox_and_mask() -> None:
    parts = torch.zeros(2, 6, 6, dtype=torch.long)
    parts[0, 1, 1] = 1
    parts[0, 3, 4] = 1  # part 1 spans rows 1-3, cols 1-4 in image 0
    parts[1, 5, 0] = 2
    images = torch.zeros(2, 3, 6, 6)
    out, masks = occlude_parts(images, parts, [1, 2])
    expected0 = torch.zeros(6, 6, dtype=torch.bool)
    expected0[1:4, 1:5] = True
    expected1 = torch.zeros(6, 6, dtype=torch.bool)
    expected1[5, 0] = True
    assert torch.equal(masks[0], expected0) and torch.equal(masks[1], expected1)
    assert (out[0, :, 1:4, 1:5] == -1).all() and out[0, :, 0].eq(0).all()
    _, only_pixels = occlude_parts(images, parts, [[1], []], mode="mask")
    assert only_pixels[0].sum() == 2 and only_pixels[1].sum() == 0
    with pytest.raises(UserError):
        occlude_parts(images, parts[:, :5], [1])


def test_peak_locations_and_spread(tmp_path: Path) -> None:
    maps = torch.zeros(2, 3, 4, 4)
    maps[0, 0, 1, 2] = 1.0  # filter 0: face 0 peak at cell (r1, c2) weight 1
    maps[1, 0, 3, 0] = 3.0  # face 1 at (r3, c0) weight 3
    maps[:, 1, 0, 0] = 2.0  # filter 1: both at (r0, c0)
    maps[:, 2] = -1.0  # filter 2: no positive response
    stats = peak_locations(maps, "pos", input_size=(96, 96))
    p00, p01 = torch.tensor([(2 + 0.5) * 24, (1 + 0.5) * 24]), torch.tensor([0.5 * 24, 3.5 * 24])
    mu0 = (1 * p00 + 3 * p01) / 4
    torch.testing.assert_close(stats.locations[0], mu0.double())
    dev0 = (1 * (p00 - mu0).norm() + 3 * (p01 - mu0).norm()) / 4
    assert float(stats.deviations[0]) == pytest.approx(float(dev0))
    torch.testing.assert_close(stats.locations[1], torch.tensor([12.0, 12.0], dtype=torch.float64))
    assert float(stats.deviations[1]) == 0.0
    assert torch.isnan(stats.locations[2]).all() and stats.counts.tolist() == [2, 2, 0]
    centroid = (mu0.double() + stats.locations[1]) / 2
    d = ((mu0.double() - centroid).norm() + (stats.locations[1] - centroid).norm()) / 2
    assert stats.spread == pytest.approx(float(d))
    neg = peak_locations(maps, "neg")
    assert neg.counts.tolist() == [0, 0, 2]
    torch.testing.assert_close(neg.locations[2], torch.tensor([12.0, 12.0], dtype=torch.float64))
    # landmarks shifted by (+6, 0) relative to the reference: peaks move back by 6 px
    ref = torch.tensor([[30.0, 40.0], [66.0, 40.0], [48.0, 60.0]])
    warped = peak_locations(maps, "pos", landmarks=(ref + torch.tensor([6.0, 0.0])).expand(2, 3, 2), reference=ref)
    torch.testing.assert_close(warped.locations[1], torch.tensor([6.0, 12.0], dtype=torch.float64))

    face = mean_face(torch.zeros(2, 3, 96, 96))
    assert face.shape == (96, 96, 3) and int(face[0, 0, 0]) == 128
    path = plot_peaks(face, stats.locations, tmp_path / "peaks.png", deviations=stats.deviations, title="d")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
