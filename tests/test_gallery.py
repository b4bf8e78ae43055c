"""Gallery classifier: scaled cosine logits, the fc contract, enrolment from folders and mappings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from scout_exp.errors import UserError
from scout_exp.models import split_classifier
from scout_exp.models.gallery import GalleryClassifier, enrol


class MeanColour(nn.Module):
    """Embedding = per-channel mean of the image plus a constant: easy to compute by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.tensor([0.1, 0.2, 0.3, 0.4]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour = x.mean(dim=(2, 3))
        return torch.cat([colour, torch.ones_like(colour[:, :1])], dim=1) + self.offset


def preprocess(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1) / 255.0)


def _hand_embedding(image: np.ndarray) -> np.ndarray:
    e = np.concatenate([image.reshape(-1, 3).mean(0) / 255.0, [1.0]]) + [0.1, 0.2, 0.3, 0.4]
    return e / np.linalg.norm(e)


def _solid(rgb: tuple[int, int, int], noise: int = 0, seed: int = 0) -> np.ndarray:
    img = np.empty((8, 8, 3), np.int32)
    img[:] = rgb
    img += np.random.default_rng(seed).integers(-noise, noise + 1, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_logits_are_scaled_cosines() -> None:
    templates = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 3.0, 4.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    model = GalleryClassifier(MeanColour(), templates, ["a", "b", "c"], scale=5.0)
    images = [_solid((200, 10, 10)), _solid((10, 120, 250))]
    logits = model(torch.stack([preprocess(i) for i in images])).detach().numpy()
    t = templates.numpy() / np.linalg.norm(templates.numpy(), axis=1, keepdims=True)
    expected = 5.0 * np.stack([_hand_embedding(i) for i in images]) @ t.T
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    np.testing.assert_allclose(model.templates.numpy(), t, atol=1e-6)


def test_fc_contract_and_gradients() -> None:
    model = GalleryClassifier(MeanColour(), torch.eye(4)[:2], ["a", "b"])
    x = preprocess(_solid((30, 60, 90)))[None].requires_grad_(True)
    model(x)[0, 1].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # explainable like a classifier
    trunk, fc = split_classifier(model)
    feature = trunk(x)
    np.testing.assert_allclose(feature.norm(dim=1).item(), 1.0, atol=1e-6)
    assert isinstance(fc, nn.Linear) and fc.bias is None and fc.weight.shape == (2, 4)
    with pytest.raises(UserError, match="one row per name"):
        GalleryClassifier(MeanColour(), torch.eye(4)[:3], ["a", "b"])


def test_enrol_from_folder_means_normalised_embeddings(tmp_path: Path) -> None:
    people = {
        "red": [_solid((220, 20, 20), 10, s) for s in range(3)],
        "blue": [_solid((20, 20, 220), 10, s) for s in range(3, 5)],
    }
    for name, images in people.items():
        (tmp_path / name).mkdir()
        for k, img in enumerate(images):
            cv2.imwrite(str(tmp_path / name / f"{k}.png"), img[..., ::-1])
    (tmp_path / "notes.txt").write_text("ignored")
    model = enrol(MeanColour(), tmp_path, preprocess, scale=7.0)
    assert model.names == ["blue", "red"]  # sorted folder names
    for row, name in enumerate(model.names):
        mean = np.mean([_hand_embedding(i) for i in people[name]], axis=0)
        np.testing.assert_allclose(model.templates[row].numpy(), mean / np.linalg.norm(mean), atol=1e-5)
    probe = torch.stack([preprocess(_solid((200, 40, 40))), preprocess(_solid((40, 40, 200)))])
    assert model(probe).argmax(dim=1).tolist() == [1, 0]
    same = enrol(MeanColour(), {"red": people["red"], "blue": people["blue"]}, preprocess, scale=7.0)
    np.testing.assert_allclose(same.templates[0].numpy(), model.templates[1].numpy(), atol=1e-6)


def test_empty_gallery_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no images"):
        enrol(MeanColour(), tmp_path, preprocess)
    (tmp_path / "alice").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        enrol(MeanColour(), tmp_path, preprocess)
    with pytest.raises(UserError, match="does not exist"):
        enrol(MeanColour(), tmp_path / "absent", preprocess)
    with pytest.raises(UserError, match="gallery is empty for alice"):
        enrol(MeanColour(), {"alice": [], "bob": [_solid((1, 2, 3))]}, preprocess)


def test_real_descriptor_gallery_recognises_sample_faces() -> None:
    from scout_exp.zoo import weights_path

    try:
        weights = weights_path("face_descriptor")
    except UserError as err:
        pytest.skip(f"face_descriptor weights not cached ({err})")
    cbook = pytest.importorskip("matplotlib.cbook")
    skdata = pytest.importorskip("skimage.data")
    from scout_exp.data.align import warp_to_template
    from scout_exp.data.images import read_rgb
    from scout_exp.data.transforms import Preprocess
    from scout_exp.models import create_model
    from scout_exp.zoo.registry import FACE_DESCRIPTOR_INPUT

    # MTCNN's landmarks on the two sample images (measured once; detection is tested in test_align.py)
    hopper, _ = warp_to_template(
        read_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
        np.array([[221.67, 192.21], [309.83, 186.13], [269.36, 239.17], [232.65, 279.65], [306.64, 275.93]]),
        "dlib150",
    )
    collins, _ = warp_to_template(
        skdata.astronaut(),
        np.array([[205.01, 101.73], [246.76, 103.71], [224.67, 128.96], [201.72, 139.25], [245.27, 141.86]]),
        "dlib150",
    )
    net = create_model("face_descriptor", 128, weights_dir=str(weights))
    pre = Preprocess(FACE_DESCRIPTOR_INPUT)
    gallery = enrol(net, {"hopper": [hopper], "collins": [collins]}, pre)
    probes = torch.stack([pre(np.ascontiguousarray(im[:, ::-1])) for im in (hopper, collins)])
    with torch.no_grad():
        logits = gallery.eval()(probes)
    assert logits.argmax(dim=1).tolist() == [0, 1]
