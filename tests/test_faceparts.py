"""FaceParts: determinism, part maps against the drawn pixels, codes, counterfactuals, landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from scout_exp.data import faceparts as fpmod
from scout_exp.data.faceparts import (
    FACE_PARTS,
    LANDMARK_NAMES,
    PART_NAMES,
    FaceParts,
    FacePartsDataset,
    blur_radius,
    identity_codes,
    measure_render_throughput,
)
from scout_exp.data.faceparts_draw import SKIN_TONES
from scout_exp.errors import UserError


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel) > 0


def _label(part: str) -> int:
    return PART_NAMES.index(part) + 1


def test_determinism_and_seed() -> None:
    a = FaceParts(num_identities=5, images_per_identity=4, seed=3)
    b = FaceParts(num_identities=5, images_per_identity=4, seed=3)
    c = FaceParts(num_identities=5, images_per_identity=4, seed=4)
    for index in (0, 7, 19):
        s1, s2, s3 = a.render(index), b.render(index), c.render(index)
        assert s1.image.dtype == np.uint8 and s1.parts.dtype == np.uint8
        assert s1.landmarks.dtype == np.float32 and s1.landmarks.shape == (len(LANDMARK_NAMES), 2)
        np.testing.assert_array_equal(s1.image, s2.image)
        np.testing.assert_array_equal(s1.parts, s2.parts)
        np.testing.assert_array_equal(s1.landmarks, s2.landmarks)
        assert s1.identity == s2.identity == index % 5
        assert not np.array_equal(s1.image, s3.image)
    assert not np.array_equal(a.codes, c.codes)
    assert not np.array_equal(a.render(0).image, a.render(5).image)  # same identity, new nuisance


def test_length_and_balanced_identities() -> None:
    fp = FaceParts(num_identities=7, images_per_identity=3)
    assert len(fp) == 21
    ids = [fp.identity_of(i) for i in range(14)]
    assert np.bincount(ids).tolist() == [2] * 7
    with pytest.raises(IndexError):
        fp.render(21)


def test_codes_min_distance_prefix_and_infeasible(monkeypatch: pytest.MonkeyPatch) -> None:
    codes = identity_codes(100, seed=0)
    dist = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    np.fill_diagonal(dist, 99)
    assert dist.min() >= 3
    np.testing.assert_array_equal(identity_codes(30, seed=0), codes[:30])
    for p, k in zip(FACE_PARTS, codes.T):
        assert k.min() >= 0 and k.max() < fpmod.NUM_VARIANTS[p]
    with pytest.raises(UserError):
        identity_codes(fpmod.MAX_IDENTITIES + 1, seed=0)
    monkeypatch.setattr(fpmod, "MIN_PART_DISTANCE", len(FACE_PARTS) + 1)
    with pytest.raises(UserError, match="cannot find"):
        identity_codes(2, seed=0)


def test_differing_parts_is_exactly_the_identity_difference() -> None:
    """Swapping in exactly the differing parts of b turns a's clean render into b's."""
    fp = FaceParts(num_identities=12, images_per_identity=2, difficulty=0.0, seed=1, lookalikes=())
    for a, b in [(0, 1), (3, 7), (11, 2)]:
        diff = fp.differing_parts(a, b)
        assert len(diff) >= 3 and fp.differing_parts(a, a) == []
        assert set(diff) == {p for p in FACE_PARTS if fp.variants(a)[p] != fp.variants(b)[p]}
        swapped = fp.render(a, swap={p: b for p in diff})
        assert swapped.identity == a
        np.testing.assert_array_equal(swapped.image, fp.render(b).image)
        np.testing.assert_array_equal(swapped.parts, fp.render(b).parts)
    assert list(fp.variants(0)) == list(FACE_PARTS)


def test_clean_render_part_map_matches_pixels() -> None:
    fp = FaceParts(
        num_identities=20, images_per_identity=1, difficulty=0.0, seed=2, lookalikes=()
    )  # pinned independent codes
    for index in range(20):
        s = fp.render(index)
        tone = np.array(SKIN_TONES[fp.variants(s.identity)["face"] % len(SKIN_TONES)])
        face_core = _erode(fp.part_mask(s, ["face"]), blur_radius(112, 0.0))
        assert face_core.sum() > 0.04 * s.parts.size
        assert (s.image[face_core] == tone).all()
        exact_tone = _erode((s.image == tone).all(-1), 1)
        assert (s.parts[exact_tone] == _label("face")).all()
        assert (s.parts != len(PART_NAMES)).all()  # no occluders when clean
        background = s.parts == 0
        assert (s.image[_erode(background, 2)] == fpmod.CLEAN_BACKGROUND).all()


def test_glasses_label_is_where_glasses_change_pixels() -> None:
    fp = FaceParts(num_identities=30, images_per_identity=1, difficulty=0.0, seed=0)
    with_glasses = [i for i in range(30) if fp.variants(i)["glasses"]]
    without = [i for i in range(30) if not fp.variants(i)["glasses"]]
    assert with_glasses and without
    for a in with_glasses[:3]:
        s = fp.render(a)
        bare = fp.render(a, swap={"glasses": without[0]})
        changed = (s.image != bare.image).any(-1)
        glasses = fp.part_mask(s, ["glasses"])
        assert glasses.sum() > 30
        assert not fp.part_mask(bare, ["glasses"]).any()
        assert not (changed & ~_dilate(glasses, blur_radius(112, 0.0))).any()
        assert (changed[glasses]).mean() > 0.95


@pytest.mark.parametrize("difficulty", [0.0, 1.0, 1.5])
def test_counterfactual_changes_only_swapped_parts(difficulty: float) -> None:
    """Outside the old+new regions of the swapped parts, dilated by the smoothing/blur radius
    (2 px clean, 6 px at difficulty 1), pixels and labels are equal."""
    margin = blur_radius(112, difficulty)
    assert margin == {0.0: 2, 1.0: 6, 1.5: 9}[difficulty]
    fp = FaceParts(num_identities=10, images_per_identity=6, difficulty=difficulty, seed=5)
    swaps = [
        {"nose": 7},
        {"left_eye": 3, "mouth": 4},
        {"hair": 1},
        {"face": 9},
        {"beard": 2},
        {"right_brow": 6, "glasses": 8},
    ]
    for index, swap in zip(range(0, 60, 7), swaps):
        s = fp.render(index)
        cf = fp.render(index, swap=swap)
        assert cf.identity == s.identity
        region = _dilate(fp.part_mask(s, swap) | fp.part_mask(cf, swap), margin)
        changed = (s.image != cf.image).any(-1)
        assert not (changed & ~region).any()
        np.testing.assert_array_equal(s.parts[~region], cf.parts[~region])
        np.testing.assert_array_equal(s.landmarks[:2], cf.landmarks[:2])
        differs = any(fp.variants(s.identity)[p] != fp.variants(o)[p] for p, o in swap.items())
        if differs and difficulty == 0:
            assert changed.any()


@pytest.mark.parametrize("size", [96, 112, 224])
def test_sizes_scale_the_same_face(size: int) -> None:
    fp = FaceParts(num_identities=4, images_per_identity=2, image_size=size, seed=0)
    s = fp.render(3)
    assert s.image.shape == (size, size, 3) and s.parts.shape == (size, size)
    assert ((s.landmarks >= 0) & (s.landmarks < size)).all()
    clean = FaceParts(num_identities=4, images_per_identity=2, image_size=size, difficulty=0.0)
    ref = FaceParts(num_identities=4, images_per_identity=2, image_size=112, difficulty=0.0)
    c, r = clean.render(1), ref.render(1)
    for part in ("face", "hair", "left_eye", "mouth"):
        frac_c = clean.part_mask(c, [part]).mean()
        frac_r = ref.part_mask(r, [part]).mean()
        assert frac_c == pytest.approx(frac_r, rel=0.12, abs=0.002)
    np.testing.assert_allclose(c.landmarks / size, r.landmarks / 112, atol=1.0 / 96)


def test_landmarks_lie_on_their_parts_under_pose() -> None:
    fp = FaceParts(num_identities=20, images_per_identity=3, difficulty=1.0, seed=4)
    occluder = len(PART_NAMES)
    checked = 0
    for index in range(60):
        s = fp.render(index)
        xy = np.rint(s.landmarks).astype(int)
        names = ("left_eye", "right_eye", "nose", "mouth", "mouth")
        for (x, y), part, radius in zip(xy, names, (0, 0, 1, 1, 1)):
            window = s.parts[y - radius : y + radius + 1, x - radius : x + radius + 1]
            if (window == occluder).any():
                continue
            assert (window == _label(part)).any(), (index, part)
            checked += 1
        for k, part in enumerate(("left_eye", "right_eye")):
            mask = fp.part_mask(s, [part])
            if (_dilate(mask, 2) & (s.parts == occluder)).any():
                continue
            ys, xs = np.nonzero(mask)
            assert abs(xs.mean() - s.landmarks[k, 0]) < 1.5 and abs(ys.mean() - s.landmarks[k, 1]) < 1.5
        assert s.landmarks[0, 0] < s.landmarks[1, 0]  # "left" is image-left
    assert checked > 200


def test_dataset_items_and_errors() -> None:
    fp = FaceParts(num_identities=3, images_per_identity=2, image_size=96)
    ds = FacePartsDataset(fp, [4, 1])
    assert len(ds) == 2
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 96, 96) and x.dtype == torch.float32
    assert y == 1 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    np.testing.assert_array_equal(ds.sample(0).image, fp.render(4).image)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy() * 255, fp.render(4).image, atol=1e-3)
    xt, _ = FacePartsDataset(fp, [4], transform=lambda im: torch.tensor(im.shape))[0]
    assert xt.tolist() == [96, 96, 3]
    with pytest.raises(UserError):
        fp.render(0, swap={"tail": 1})
    with pytest.raises(UserError):
        fp.render(0, swap={"nose": 3})
    with pytest.raises(UserError):
        fp.part_mask(fp.render(0), ["tail"])
    for bad in ({"image_size": 8}, {"difficulty": -1.0}, {"images_per_identity": 0}, {"num_identities": 0}):
        with pytest.raises(UserError):
            FaceParts(**bad)


def test_grid_png_and_throughput(tmp_path) -> None:
    from scout_exp.data.faceparts_grid import save_sample_grid

    fp = FaceParts(num_identities=3, images_per_identity=2)
    out = save_sample_grid(tmp_path / "grid.png", fp, [0, 1, 2])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert measure_render_throughput(n=40) > 0
