"""Facial landmarks of real-face training sets, for occlusion synthesis (docs/method.md section 4).

File format (one entry per dataset item, in the dataset's order: the ``.dat`` file order for
``data=casia_dat``, the sorted ``root/<identity>/<image>`` order for ``data=image_folder``):

- ``.npy``: float array (N, K, 2), K = 5 or 68, ``(x, y)`` per point;
- ``.csv``: one row per item, ``x1,y1,...,xK,yK``, optionally preceded by a file-name column; a
  first row that is not numeric is a header.

Coordinates are normalised to the stored image: ``x / width`` and ``y / height`` (0 = left/top
edge, 1 = right/bottom edge), so the same file serves any input size. 5 points are, in order, the
eye on the image's left, the eye on the image's right, the nose tip, the left and right mouth
corners (the 5 MTCNN points); 68 points follow the iBUG-68 scheme.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from scout_exp.data.datamodules import CasiaDatDataModule, ImageFolderDataModule
from scout_exp.errors import UserError


def read_landmarks(path: str | os.PathLike[str], count: int | None = None) -> np.ndarray:
    """Landmarks (N, K, 2) float32 of a ``.npy`` or ``.csv`` file; ``count`` = the expected N."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"landmarks file {p} does not exist")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as err:  # numpy's message suggests allow_pickle=True, which is never repeated
            pickled = "allow_pickle" in str(err)
            why = "it holds pickled Python objects, which are not loaded for safety" if pickled else "corrupt file"
            raise UserError(f"cannot read landmarks {p}: {why}; save a plain numeric (N, K, 2) array") from None
        except (OSError, EOFError) as err:
            raise UserError(f"cannot read landmarks {p}: corrupt or truncated file ({type(err).__name__})") from None
    elif p.suffix.lower() == ".csv":
        arr = _read_csv(p)
    else:
        raise UserError(f"landmarks file {p} must be .npy or .csv")
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[1] not in (5, 68) or arr.shape[2] != 2:
        raise UserError(f"landmarks in {p} must be (N, 5 or 68, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise UserError(f"landmarks in {p} contain NaN or infinity")
    if count is not None and arr.shape[0] != count:
        raise UserError(f"{p} has landmarks for {arr.shape[0]} images but the dataset has {count}")
    return arr


def _read_csv(p: Path) -> np.ndarray:
    rows = []
    with open(p, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row if c.strip()]
            if not cells:
                continue
            if len(cells) % 2 == 1:
                cells = cells[1:]  # file-name column
            try:
                values = [float(c) for c in cells]
            except ValueError:
                if lineno == 1:
                    continue  # header
                raise UserError(f"{p}:{lineno}: landmark coordinates must be numbers") from None
            rows.append(np.reshape(values, (-1, 2)))
    if not rows or len({r.shape for r in rows}) != 1:
        raise UserError(f"{p} must list the same number of points (5 or 68) on every row")
    return np.stack(rows)


class WithLandmarks(Dataset):
    """``(x, y)`` items of ``dataset`` extended to ``(x, y, landmarks)``, landmarks in the pixels of
    ``x`` (the normalised coordinates times its width and height)."""

    def __init__(self, dataset: Dataset, landmarks: np.ndarray) -> None:
        self.dataset = dataset
        self.landmarks = torch.from_numpy(landmarks)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, torch.Tensor]:
        x, y = self.dataset[index]
        scale = torch.tensor([x.shape[-1], x.shape[-2]], dtype=torch.float32)
        return x, y, self.landmarks[index] * scale


class _LandmarksMixin:
    """Adds ``landmarks`` (a file of :func:`read_landmarks`) to a data module's items."""

    landmarks_path: str

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        dataset, labels, num_classes = super().build()  # type: ignore[misc]
        return WithLandmarks(dataset, read_landmarks(self.landmarks_path, len(labels))), labels, num_classes


class CasiaDatWithLandmarks(_LandmarksMixin, CasiaDatDataModule):
    """``data=casia_dat`` whose batches carry landmarks: ``(x, y, landmarks)``."""

    def __init__(self, landmarks: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.landmarks_path = landmarks


class ImageFolderWithLandmarks(_LandmarksMixin, ImageFolderDataModule):
    """``data=image_folder`` whose batches carry landmarks: ``(x, y, landmarks)``."""

    def __init__(self, landmarks: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.landmarks_path = landmarks
