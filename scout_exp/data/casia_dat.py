"""CASIA-WebFace in the ``.dat`` pair of the Interpret_FR reference code (docs/method.md section 4).

``CASIA_all_images_110_110.dat``: raw uint8, no header, images back to back as (110, 110, 3)
height-width-channel arrays. The reference code feeds these bytes to the network with no channel
swap and reads every other image with ``scipy.misc.imread`` (RGB), so they are taken as **RGB**.
``CASIA_recrop_fileList.dat``: CSV text, one line per image in the same order; column 0 the file
name, column 2 the 0-based identity, column 3 the yaw (column 1 is not read by the reference).
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from scout_exp.errors import UserError
from scout_exp.io import atomic_path


class CasiaDat(Dataset):
    """Memory-mapped ``.dat`` images with their list file -> ``(image, identity)``.

    Training items take a random ``crop`` x ``crop`` window (centre window otherwise), as the
    reference does (no flip). Without ``transform`` an item is the crop scaled to [-1, 1] as a
    float (3, crop, crop) tensor (``x / 127.5 - 1``, docs/method.md section 4); with one, it is
    ``transform(rgb_uint8_crop)``.
    """

    def __init__(
        self,
        images_path: str | os.PathLike[str],
        list_path: str | os.PathLike[str],
        size: int = 110,
        crop: int = 96,
        train: bool = True,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        if not 0 < crop <= size:
            raise UserError(f"crop {crop} must be between 1 and the image size {size}")
        self.images_path = Path(images_path)
        self.list_path = Path(list_path)
        self.size, self.crop, self.train, self.transform = size, crop, train, transform
        self.names, self.labels, self.yaws = read_casia_list(self.list_path)
        self.num_classes = int(self.labels.max()) + 1
        self._count = _image_count(self.images_path, size)
        if self._count != len(self.labels):
            raise UserError(
                f"{self.images_path} holds {self._count} images of {size}x{size}x3 but {self.list_path} "
                f"lists {len(self.labels)}; use the image file and list file that belong together"
            )
        self.images = self._open()

    def _open(self) -> np.memmap:
        """Map the image file read-only; pages are read only when an item touches them."""
        return np.memmap(self.images_path, dtype=np.uint8, mode="r", shape=(self._count, self.size, self.size, 3))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the mapped array (which would copy the whole file), e.g. for spawned loader workers."""
        state = self.__dict__.copy()
        state["images"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.images = self._open()

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> tuple[Any, int]:
        margin = self.size - self.crop
        if self.train:
            top, left = (int(v) for v in torch.randint(0, margin + 1, (2,)))
        else:
            top = left = round(margin / 2)
        window = np.array(self.images[index, top : top + self.crop, left : left + self.crop])
        label = int(self.labels[index])
        if self.transform is not None:
            return self.transform(window), label
        scaled = window.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1.0
        return torch.from_numpy(scaled), label


def read_casia_list(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Parse a ``CASIA_recrop_fileList.dat`` -> (file names, int64 identities, float32 yaws)."""
    names: list[str] = []
    labels: list[int] = []
    yaws: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line_no, row in enumerate(csv.reader(fh), start=1):
                if not row:
                    continue
                try:
                    names.append(row[0])
                    labels.append(int(row[2]))
                    yaws.append(float(row[3]))
                except (IndexError, ValueError):
                    raise UserError(
                        f"{path} line {line_no} is not 'name,<col1>,identity,yaw' ({','.join(row)[:80]!r}); "
                        "use the CASIA_recrop_fileList.dat that came with the image file"
                    ) from None
    except FileNotFoundError:
        raise UserError(f"list file {path} does not exist; pass the CASIA_recrop_fileList.dat path") from None
    except UnicodeDecodeError:
        raise UserError(f"list file {path} is not text; pass the CSV CASIA_recrop_fileList.dat") from None
    if not labels:
        raise UserError(f"list file {path} is empty; pass the CASIA_recrop_fileList.dat that lists the images")
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.min() < 0:
        raise UserError(f"{path} has negative identities; identities must be 0-based class indices")
    return names, label_array, np.asarray(yaws, dtype=np.float32)


def _image_count(path: Path, size: int) -> int:
    """Number of (size, size, 3) images in the raw file, checking that its length is a whole number of them."""
    if not path.is_file():
        raise UserError(f"image file {path} does not exist; pass the CASIA_all_images_110_110.dat path")
    nbytes = path.stat().st_size
    per_image = size * size * 3
    if nbytes == 0 or nbytes % per_image:
        raise UserError(
            f"{path} is {nbytes} bytes, not a whole number of {size}x{size}x3 images ({per_image} bytes "
            "each): the file is truncated or has another image size; download it again or set size"
        )
    return nbytes // per_image


def write_casia_dat(
    images: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    images_path: str | os.PathLike[str],
    list_path: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    yaws: Sequence[float] | None = None,
) -> None:
    """Write RGB uint8 images (N, S, S, 3) and their identities as a ``.dat`` pair in the reference format.

    Column 1 of the list, unused by every reader, is written as the identity too.
    """
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must be uint8 (N, S, S, 3), got {images.dtype} {images.shape}")
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} images")
    names = names if names is not None else [f"{int(y):07d}/{i:03d}.jpg" for i, y in enumerate(labels)]
    yaws = yaws if yaws is not None else [0.0] * n
    with atomic_path(images_path) as tmp:
        images.tofile(tmp)
    with atomic_path(list_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            for name, label, yaw in zip(names, labels, yaws):
                writer.writerow([name, int(label), int(label), float(yaw)])


def measure_dat_throughput(n: int = 2000) -> float:
    """Images per second for reading, random-cropping and tensor conversion from a ``.dat`` file of ``n`` images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 110, 110, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    with tempfile.TemporaryDirectory() as folder:
        images_path, list_path = Path(folder, "images.dat"), Path(folder, "list.dat")
        write_casia_dat(images, labels, images_path, list_path)
        del images
        dataset = CasiaDat(images_path, list_path, train=True)
        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[index]
        elapsed = time.perf_counter() - start
    return n / elapsed
