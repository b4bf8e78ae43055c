"""One-folder-per-identity face datasets read with OpenCV as RGB."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scout_exp.data.image_folder import ImageFolderFaces
from scout_exp.data.images import read_rgb
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError

RGB = (200, 40, 10)


def _write(path: Path, image_in_opencv_order: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image_in_opencv_order)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """Two identities: an RGB PNG and a grayscale PNG for ``alice``, an RGBA PNG and a JPEG for ``bob``."""
    root = tmp_path / "faces"
    bgr = np.zeros((6, 5, 3), np.uint8)
    bgr[:] = RGB[::-1]
    _write(root / "alice" / "a.png", bgr)
    _write(root / "alice" / "b.png", np.full((4, 4), 77, np.uint8))
    bgra = np.zeros((3, 3, 4), np.uint8)
    bgra[:] = (*RGB[::-1], 0)  # fully transparent: colour must survive, alpha dropped
    _write(root / "bob" / "c.png", bgra)
    _write(root / "bob" / "d.JPG", np.full((8, 8, 3), 128, np.uint8))
    (root / "bob" / "notes.txt").write_text("not an image")
    return root


def test_scan_classes_labels_and_rgb_pixels(tree: Path) -> None:
    ds = ImageFolderFaces(tree)
    assert ds.classes == ["alice", "bob"]
    assert [(Path(p).name, y) for p, y in ds.samples] == [("a.png", 0), ("b.png", 0), ("c.png", 1), ("d.JPG", 1)]
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 6, 5) and label == 0
    assert image[:, 2, 3].tolist() == list(RGB)
    gray, _ = ds[1]
    assert gray.shape == (3, 4, 4) and bool((gray == 77).all())
    rgba, label = ds[2]
    assert rgba.shape == (3, 3, 3) and rgba[:, 0, 0].tolist() == list(RGB) and label == 1
    jpeg, _ = ds[3]
    assert jpeg.shape == (3, 8, 8) and abs(int(jpeg.float().mean()) - 128) <= 2


def test_transform_receives_uint8_rgb(tree: Path) -> None:
    spec = InputSpec(size=4, channel_order="BGR", mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=255.0)
    ds = ImageFolderFaces(tree, transform=Preprocess(spec))
    x, _ = ds[0]
    assert x.shape == (3, 4, 4)
    assert x[:, 1, 1].tolist() == [float(v) for v in RGB[::-1]]


def test_corrupt_image_fails_on_load_and_in_verify(tree: Path) -> None:
    ds = ImageFolderFaces(tree)
    assert ds.verify() == []
    bad = tree / "bob" / "e.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated garbage")
    empty = tree / "alice" / "z.png"
    empty.write_bytes(b"")
    ds = ImageFolderFaces(tree)
    index = [Path(p) for p, _ in ds.samples].index(bad)
    with pytest.raises(UserError, match=r"e\.jpg is corrupt.*remove it or re-export it"):
        ds[index]
    assert sorted(ds.verify(raise_error=False)) == sorted([str(bad), str(empty)])
    with pytest.raises(UserError, match=r"2 of 6 images .* corrupt or unreadable: .*remove or re-export"):
        ds.verify()


def test_missing_and_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        ImageFolderFaces(tmp_path / "nope")
    with pytest.raises(UserError, match="no identity sub-folders"):
        ImageFolderFaces(tmp_path)
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "readme.txt").write_text("x")
    with pytest.raises(UserError, match="holds no images"):
        ImageFolderFaces(tmp_path)


def test_read_rgb_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing.png does not exist"):
        read_rgb(tmp_path / "missing.png")
