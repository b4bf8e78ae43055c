"""Real photographs in explain.py: alignment, galleries, verification maps, VGGFace2 on photos, the real-face run."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from scout_exp.cli import check_overrides
from scout_exp.data.align import get_template
from scout_exp.data.images import read_rgb
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.faces import FaceLoader, enrol_gallery, gallery_images, jitter_matrix
from scout_exp.explain.pairs import Pair, PairDataset, pairs_from_csv, pairs_from_images
from scout_exp.explain.verification import VerificationExplainer, pair_record
from scout_exp.explain.verify_loop import explain_pairs
from scout_exp.heads import create_head
from scout_exp.io import save_image
from scout_exp.tasks.recogniser import Recogniser
from tests.conftest import run_dir, run_entry

FETCH_HINT = "python -m scout_exp.zoo fetch face_descriptor"


def _cached_weights() -> Path:
    from scout_exp.zoo import weights_path

    try:
        return weights_path("face_descriptor")
    except UserError as err:
        pytest.skip(f"face_descriptor weights not cached ({err})")


def _hopper_path() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


# --- verification maps on tiny embedders: hand computation and a known layout -------------------


class FlatEmbedder(nn.Module):
    """Embedding = the flattened output of a fixed 1x1 conv (``feat``): gradients are easy by hand."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.feat = nn.Conv2d(3, weight.shape[0] if weight is not None else 3, 1, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(weight[..., None, None] if weight is not None else torch.eye(3)[..., None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feat(x).flatten(1)


def _hand_map(a: np.ndarray, a_ref: np.ndarray) -> np.ndarray:
    """m_ij = sum_k A_kij dq/dA_kij for q = <A, A_r> / (|A| |A_r|) (A_r fixed)."""
    na, nr = np.linalg.norm(a), np.linalg.norm(a_ref)
    q = float((a * a_ref).sum() / (na * nr))
    grad = a_ref / (na * nr) - q * a / na**2
    return (grad * a).sum(axis=0)


def test_verification_maps_match_hand_computation() -> None:
    rng = np.random.default_rng(0)
    weight = torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float32)
    net = FlatEmbedder(weight)
    probe = torch.tensor(rng.normal(size=(2, 3, 5, 6)), dtype=torch.float32)
    ref = torch.tensor(rng.normal(size=(2, 3, 5, 6)), dtype=torch.float32)
    e = VerificationExplainer(net, "feat").explain(probe, ref)
    for b in range(2):
        a = np.einsum("kc,chw->khw", weight.numpy(), probe[b].numpy())
        a_ref = np.einsum("kc,chw->khw", weight.numpy(), ref[b].numpy())
        np.testing.assert_allclose(e.probe_map[b].numpy(), _hand_map(a, a_ref), atol=1e-5)
        np.testing.assert_allclose(e.reference_map[b].numpy(), _hand_map(a_ref, a), atol=1e-5)
        cos = (a * a_ref).sum() / (np.linalg.norm(a) * np.linalg.norm(a_ref))
        np.testing.assert_allclose(e.cosine[b].item(), cos, atol=1e-5)
        np.testing.assert_allclose(e.distance[b].item(), np.linalg.norm(a - a_ref), rtol=1e-5)


def test_agreeing_half_is_similar_and_opposite_half_different() -> None:
    rng = np.random.default_rng(1)
    probe = torch.tensor(rng.normal(size=(1, 3, 8, 8)), dtype=torch.float32)
    ref = probe.clone()
    ref[..., 4:] = -ref[..., 4:]  # right half opposite, left half identical
    e = VerificationExplainer(FlatEmbedder(), "feat").explain(probe, ref)
    for k, m in enumerate((e.probe_map[0], e.reference_map[0])):
        assert (m[:, :4] > 0).all() and (m[:, 4:] < 0).all()
        assert e.similar[k, 0][:, 4:].sum() == 0 and e.different[k, 0][:, :4].sum() == 0
    record = pair_record(e, 0, threshold=0.6)
    total = record["probe"]["similar_mass"] + record["probe"]["different_mass"]
    assert record["probe"]["similar_share"] == pytest.approx(record["probe"]["similar_mass"] / total)
    assert record["same_person"] is False and record["distance"] > 0.6


def test_verify_needs_two_images(tmp_path: Path) -> None:
    face = save_image(np.full((8, 8, 3), 90, np.uint8), tmp_path / "a.png")
    spec = InputSpec(size=8, mean=(0, 0, 0), std=(1, 1, 1))
    dataset = PairDataset([Pair(str(face), None, name="pair_000")], Preprocess(spec))
    with pytest.raises(UserError, match="two images per pair"):
        explain_pairs(VerificationExplainer(FlatEmbedder(), "feat"), dataset)


def test_verification_pairs_write_figure_maps_and_record(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    left = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    right = left.copy()
    right[:, 8:] = 255 - right[:, 8:]
    paths = [str(save_image(img, tmp_path / f"{n}.png")) for n, img in (("a", left), ("b", right))]
    spec = InputSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    dataset = PairDataset(pairs_from_images(paths, []), Preprocess(spec))
    (item,) = explain_pairs(VerificationExplainer(FlatEmbedder(), "feat"), dataset, threshold=100.0, save_maps=True)
    assert sorted(item.files) == sorted([item.record["figure"], item.record["maps"]])
    assert not (tmp_path / item.record["figure"]).exists()  # the record writer writes them
    item.write_files(tmp_path)
    record = item.record
    assert record["same_person"] is True and record["images"] == paths
    assert (tmp_path / record["figure"]).stat().st_size > 5000
    maps = np.load(tmp_path / record["maps"])
    assert maps["probe"].shape == maps["reference"].shape == (16, 16)
    # inverted halves: the similar evidence lies on the left, the different evidence on the right
    assert maps["probe"][:, :8].mean() > 0 > maps["probe"][:, 8:].mean()
    assert record["probe"]["similar_share"] == pytest.approx(
        np.clip(maps["probe"], 0, None).sum() / np.abs(maps["probe"]).sum(), abs=0.05
    )


# --- face loading, alignment, jitter and galleries -----------------------------------------------


class FakeDetector:
    """One face with fixed landmarks, in facenet-pytorch's output format."""

    def __init__(self, landmarks: np.ndarray | None) -> None:
        self.landmarks = landmarks

    def detect(self, image: np.ndarray, landmarks: bool = True) -> tuple:
        if self.landmarks is None:
            return None, [None], None
        box = np.array([[10.0, 10.0, 60.0, 70.0]])
        return box, np.array([0.99]), self.landmarks[None]


def test_grayscale_and_rgba_are_aligned_like_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (80, 70, 3), dtype=np.uint8)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([rgb[..., ::-1], np.full(gray.shape, 128, np.uint8)]))
    template = get_template("dlib150")
    points = template.points * 0.4 + 5.0  # a face at 0.4 of the template's scale, shifted
    loader = FaceLoader("dlib150", FakeDetector(points))
    rgba_crop, gray_crop = loader(str(tmp_path / "rgba.png")), loader(str(tmp_path / "gray.png"))
    # an exact similarity (scale 2.5, shift) maps the landmarks onto the template
    expected = cv2.warpAffine(rgb, np.array([[2.5, 0, -12.5], [0, 2.5, -12.5]]), (150, 150))
    assert rgba_crop.shape == gray_crop.shape == (150, 150, 3)
    np.testing.assert_array_equal(rgba_crop, expected)
    assert (gray_crop[..., 0] == gray_crop[..., 2]).all() and gray_crop.std() > 10


def test_bad_inputs_are_one_clear_line(tmp_path: Path) -> None:
    blank = save_image(np.full((64, 64, 3), 120, np.uint8), tmp_path / "blank.png")
    with pytest.raises(UserError, match=f"no face found in image {blank}"):
        FaceLoader("dlib150", FakeDetector(None))(str(blank))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(UserError, match="corrupt"):
        FaceLoader("dlib150", FakeDetector(None))(str(corrupt))
    (tmp_path / "gallery" / "nobody").mkdir(parents=True)
    (tmp_path / "gallery" / "nobody" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="holds no images"):
        gallery_images({"folder": str(tmp_path / "gallery")})
    with pytest.raises(UserError, match="sample:grace_hopper"):
        pairs_from_images(["sample:nobody"], [])
    with pytest.raises(UserError, match="unknown alignment template"):
        FaceLoader("dlib151")


def test_pairs_csv_keeps_sample_names(tmp_path: Path) -> None:
    face = save_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "face.png")
    (tmp_path / "pairs.csv").write_text("image_1,image_2\nface.png,sample:grace_hopper\n")
    (pair,) = pairs_from_csv(tmp_path / "pairs.csv")
    assert pair.image_1 == str(face) and pair.image_2 == "sample:grace_hopper"


def test_jitter_is_a_small_similarity_about_the_centre() -> None:
    m = jitter_matrix(np.random.default_rng(3), (150, 150))
    a, b = m[0, 0], m[1, 0]
    assert m[0, 1] == pytest.approx(-b) and m[1, 1] == pytest.approx(a)
    assert 0.95 <= np.hypot(a, b) <= 1.05
    centre = m[:, :2] @ [75.0, 75.0] + m[:, 2]
    assert np.abs(centre - 75.0).max() <= 0.04 * 150 + 1e-9


class MeanColour(nn.Module):
    """Embedding = per-channel mean plus a constant offset."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) + 0.1


def test_gallery_from_folder_with_jitter_means_view_embeddings(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    people = {"ann": (200, 40, 40), "bob": (40, 40, 200)}
    for name, colour in people.items():
        (tmp_path / name).mkdir()
        image = np.clip(np.array(colour) + rng.integers(-30, 30, (20, 20, 3)), 0, 255).astype(np.uint8)
        save_image(image, tmp_path / name / "0.png")
    spec = InputSpec(size=20, mean=(0, 0, 0), std=(1, 1, 1))
    model = enrol_gallery(
        {"folder": str(tmp_path), "align": None, "jitter": 3, "scale": 5.0}, MeanColour(), Preprocess(spec)
    )
    assert model.names == ["ann", "bob"]
    for row, name in enumerate(model.names):
        views = FaceLoader(None).views(str(tmp_path / name / "0.png"), 3, seed=0)
        assert len(views) == 4 and not np.array_equal(views[0], views[1])
        emb = np.stack([np.asarray(v, np.float64).mean(axis=(0, 1)) / 255 + 0.1 for v in views])
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        template = emb.mean(0) / np.linalg.norm(emb.mean(0))
        np.testing.assert_allclose(model.templates[row].numpy(), template, atol=1e-5)


def test_gallery_layers_are_named_as_in_the_model_config() -> None:
    recogniser = Recogniser(
        nn.Identity(), create_head("softmax"), InputSpec(), "conv128_2", "x", layer_prefix="embedder."
    )
    assert recogniser.layer(None) == "embedder.conv128_2"
    assert recogniser.layer("conv64_1") == "embedder.conv64_1"
    assert recogniser.layer("embedder.conv64_1") == "embedder.conv64_1"
    assert Recogniser(nn.Identity(), create_head("softmax"), InputSpec(), "layer4", "x").layer(None) == "layer4"


def test_face_descriptor_config_takes_the_registered_facts() -> None:
    from scout_exp.models import resolve_model_config
    from scout_exp.models.face_descriptor import FaceDescriptorNet
    from scout_exp.zoo import get_entry

    cfg = check_overrides("explain", ["experiment=real_faces"])
    model_cfg = resolve_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    spec = InputSpec.from_config(model_cfg["input"])
    assert spec == get_entry(cfg.model.zoo).input_spec  # the registration and the zoo entry share one constant
    assert model_cfg["target_layer"] in dict(FaceDescriptorNet().named_modules())
    assert get_template(cfg.align).size == spec.size
    assert cfg.gallery.align == "dlib150" and set(cfg.gallery.identities) == {"grace_hopper", "eileen_collins"}


# --- explain.py end to end ----------------------------------------------------------------------


@pytest.mark.slow
def test_real_faces_run(tmp_path: Path) -> None:
    """experiment=real_faces: each photo recognised as its gallery identity, explained against the other."""
    _cached_weights()
    pytest.importorskip("skimage")
    result = run_entry("explain.py", "experiment=real_faces", "gallery.jitter=2", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_dir(tmp_path, "explain")
    record = json.loads((run / "explanations.json").read_text())
    assert record["summary"]["gallery"] == ["grace_hopper", "eileen_collins"]
    assert record["summary"]["layer"] == "embedder.conv128_2"
    pair = record["pairs"][0]
    assert pair["image_1"]["class_name"] == pair["image_2"]["counter_name"] == "grace_hopper"
    assert pair["image_2"]["class_name"] == pair["image_1"]["counter_name"] == "eileen_collins"
    for side in ("image_1", "image_2"):
        assert pair[side]["predicted"] == pair[side]["class"] and pair[side]["prob_class"] > 0.6
        assert pair[side]["segment_area_px"] == round(0.1 * 150 * 150)
    assert (run / pair["figure"]).stat().st_size > 20000


def test_real_faces_without_weights_says_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scout_exp.tasks.recogniser_loader import load_recogniser

    monkeypatch.setenv("SCOUT_EXP_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError, match=FETCH_HINT):
        load_recogniser(check_overrides("explain", ["experiment=real_faces"]))


def test_embedding_model_without_gallery_is_refused() -> None:
    from scout_exp.tasks.recogniser_loader import load_recogniser

    _cached_weights()
    with pytest.raises(UserError, match="enrol a gallery"):
        load_recogniser(check_overrides("explain", ["model=face_descriptor"]))


def _vggface2_pickle(path: Path, num_classes: int) -> nn.Module:
    """A random-weight VGGFace2 ResNet-50 written as the public files are: a pickle of name -> array."""
    from scout_exp.models.vggface2 import vggface2_resnet50

    torch.manual_seed(0)
    model = vggface2_resnet50(num_classes=num_classes).eval()
    with torch.no_grad():
        model.fc.weight.mul_(0.05)  # keep the softmax away from saturation so probabilities discriminate
    state = {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with open(path, "wb") as fh:
        pickle.dump(state, fh, protocol=2)
    return model


@pytest.mark.slow
def test_vggface2_on_photographs_uses_section3_preprocessing(tmp_path: Path) -> None:
    """Probabilities in the record equal an independent pass: MTCNN crop at 224, RGB -> BGR, minus the BGR mean."""
    skdata = pytest.importorskip("skimage.data")
    from scout_exp.data.align import align_face

    weights = tmp_path / "resnet50_random.pkl"
    model = _vggface2_pickle(weights, num_classes=5)
    astronaut = save_image(skdata.astronaut(), tmp_path / "astronaut.png")
    images = [_hopper_path(), str(astronaut)]
    result = run_entry(
        "explain.py",
        "model=vggface2_resnet50",
        f"model.kwargs.weights={weights}",
        "+model.kwargs.num_classes=5",
        "align=vggface2_224",
        f"images=[{images[0]},{images[1]}]",
        "logger=none",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pair = json.loads((run_dir(tmp_path, "explain") / "explanations.json").read_text())["pairs"][0]
    crops = [align_face(read_rgb(p), "vggface2_224").image for p in images]
    bgr_mean = np.array([91.4953, 103.8827, 131.0912], np.float32)
    x = torch.from_numpy(np.stack([(c[..., ::-1].astype(np.float32) - bgr_mean).transpose(2, 0, 1) for c in crops]))
    with torch.no_grad():
        probs = model(x).softmax(dim=1).numpy()
    for b, side in enumerate(("image_1", "image_2")):
        item = pair[side]
        assert probs[b, item["class"]] == pytest.approx(item["prob_class"], abs=1e-4)
        assert probs[b, item["counter_class"]] == pytest.approx(item["prob_counter"], abs=1e-4)
    assert pair["image_1"]["class"] == int(probs[0].argmax())


def test_photo_without_a_face_is_named_by_the_pair_loader(tmp_path: Path) -> None:
    """The real MTCNN finds no face in a blank photo; the error names the file."""
    pytest.importorskip("facenet_pytorch")
    blank = save_image(np.full((96, 96, 3), 128, np.uint8), tmp_path / "blank.png")
    dataset = PairDataset(pairs_from_images([str(blank)], []), Preprocess(InputSpec(size=150)), align="dlib150")
    with pytest.raises(UserError, match=f"no face found in image {blank}"):
        dataset[0]
