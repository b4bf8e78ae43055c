"""Face crops stored one folder per identity (aligned CASIA-WebFace, VGGFace2), read with OpenCV as RGB."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import find_classes, make_dataset

from scout_exp.data.images import IMAGE_EXTENSIONS, read_rgb
from scout_exp.errors import UserError

_MAX_LISTED = 5


class ImageFolderFaces(Dataset):
    """``root/<identity>/<image>`` tree -> ``(image, label)``; labels index the sorted identity folders.

    The file scan is torchvision's ``find_classes``/``make_dataset``. Each item is
    ``transform(rgb_uint8_hwc)`` when a transform (e.g. :class:`scout_exp.data.transforms.Preprocess`)
    is given, else the uint8 image as a (3, H, W) tensor.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[np.ndarray], Any] | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        if not self.root.is_dir():
            raise UserError(f"image folder {self.root} does not exist; point it at a folder of identity sub-folders")
        try:
            self.classes, self.class_to_idx = find_classes(self.root)
        except FileNotFoundError:
            raise UserError(
                f"image folder {self.root} has no identity sub-folders; expected root/<identity>/<image> files"
            ) from None
        self.samples: list[tuple[str, int]] = make_dataset(
            self.root, self.class_to_idx, extensions=tuple(e.lower() for e in extensions), allow_empty=True
        )
        if not self.samples:
            raise UserError(
                f"image folder {self.root} holds no images with extensions {', '.join(extensions)} in its "
                "identity sub-folders; check the path and the extensions"
            )
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        image = read_rgb(path)
        if self.transform is not None:
            return self.transform(image), label
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), label

    def verify(self, raise_error: bool = True) -> list[str]:
        """Decode every image; return the paths that fail, or raise one UserError listing them."""
        bad = []
        for path, _ in self.samples:
            try:
                read_rgb(path)
            except UserError:
                bad.append(path)
        if bad and raise_error:
            more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
            raise UserError(
                f"{len(bad)} of {len(self.samples)} images under {self.root} are corrupt or unreadable: "
                f"{', '.join(bad[:_MAX_LISTED])}{more}; remove or re-export them"
            )
        return bad
