"""CASIA ``.dat`` image/list pair of the Interpret_FR reference code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from scout_exp.data.casia_dat import CasiaDat, measure_dat_throughput, read_casia_list, write_casia_dat
from scout_exp.errors import UserError


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(5, 110, 110, 3), dtype=np.uint8)
    labels = np.array([0, 2, 1, 2, 0])
    images_path, list_path = tmp_path / "CASIA_all_images_110_110.dat", tmp_path / "CASIA_recrop_fileList.dat"
    write_casia_dat(images, labels, images_path, list_path, yaws=[0.5, -10.0, 3.25, 0.0, 1.0])
    return images_path, list_path, images, labels


def test_file_format_is_raw_hwc_bytes_and_csv(files) -> None:
    images_path, list_path, images, labels = files
    assert images_path.read_bytes() == images.tobytes()  # no header, (N, 110, 110, 3) order
    first = list_path.read_text().splitlines()[1].split(",")
    assert first[0] == "0000002/001.jpg" and first[2] == "2" and float(first[3]) == -10.0
    names, read_labels, yaws = read_casia_list(list_path)
    assert read_labels.tolist() == labels.tolist() and yaws.tolist() == [0.5, -10.0, 3.25, 0.0, 1.0]


def test_eval_centre_crop_scaled_to_unit_range(files) -> None:
    images_path, list_path, images, labels = files
    ds = CasiaDat(images_path, list_path, train=False)
    assert isinstance(ds.images, np.memmap) and ds.images.mode == "r"
    assert len(ds) == 5 and ds.num_classes == 3 and ds.labels.tolist() == labels.tolist()
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 96, 96) and y == 2
    expected = images[3, 7:103, 7:103].astype(np.float64) / 127.5 - 1.0
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), expected, atol=1e-6)
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_train_crops_are_random_windows_of_the_image(files) -> None:
    images_path, list_path, images, _ = files
    ds = CasiaDat(images_path, list_path, train=True, transform=lambda a: a)
    torch.manual_seed(0)
    offsets = set()
    for _ in range(6):
        window, _ = ds[1]
        assert window.shape == (96, 96, 3) and window.dtype == np.uint8
        hits = [
            (top, left)
            for top in range(15)
            for left in range(15)
            if np.array_equal(images[1, top : top + 96, left : left + 96], window)
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 1
    torch.manual_seed(0)
    again = {ds[1][0].tobytes() for _ in range(6)}
    torch.manual_seed(0)
    assert again == {ds[1][0].tobytes() for _ in range(6)}


def test_pickling_reopens_the_map_instead_of_copying(files) -> None:
    images_path, list_path, _, _ = files
    ds = CasiaDat(images_path, list_path, train=False)
    blob = pickle.dumps(ds)
    assert len(blob) < 110 * 110 * 3
    copy = pickle.loads(blob)
    assert isinstance(copy.images, np.memmap)
    assert torch.equal(copy[4][0], ds[4][0])


def test_truncated_image_file(files) -> None:
    images_path, list_path, _, _ = files
    images_path.write_bytes(images_path.read_bytes()[:-1])
    with pytest.raises(UserError, match="truncated"):
        CasiaDat(images_path, list_path)


def test_list_length_mismatch(files) -> None:
    images_path, list_path, _, _ = files
    lines = list_path.read_text().splitlines()
    list_path.write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(UserError, match="holds 5 images of 110x110x3 but .* lists 4"):
        CasiaDat(images_path, list_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "is empty"),
        ("a.jpg,0,zero,1.0\n", "line 1 is not"),
        ("a.jpg,0\n", "line 1 is not"),
        ("a.jpg,0,-1,0\n", "negative"),
    ],
)
def test_bad_list_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "list.dat"
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        read_casia_list(path)


def test_missing_files_and_bad_crop(files, tmp_path: Path) -> None:
    images_path, list_path, _, _ = files
    with pytest.raises(UserError, match="does not exist"):
        CasiaDat(tmp_path / "none.dat", list_path)
    with pytest.raises(UserError, match="does not exist"):
        CasiaDat(images_path, tmp_path / "none.txt")
    with pytest.raises(UserError, match="crop 120"):
        CasiaDat(images_path, list_path, crop=120)


def test_throughput_is_measured() -> None:
    assert measure_dat_throughput(n=20) > 0
