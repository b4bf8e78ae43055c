"""Identity gallery on top of an embedding network, so a face *recogniser* can be explained as a classifier.

``GalleryClassifier(x) = fc(normalize(embedder(x)))`` where ``fc`` is a bias-free ``nn.Linear``
whose rows are ``scale * t_c / ||t_c||`` (one L2-normalised template per identity): the logits
are scaled cosine similarities. This keeps the registry contract (the last operation is ``fc`` on a
flat feature, here the L2-normalised embedding), so :func:`split_classifier` and the SCOUT maps
(class logit ``h_y``, counter class ``y^c``, docs/method.md section 1) work unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scout_exp.data.align import list_images
from scout_exp.data.images import read_rgb, to_rgb
from scout_exp.errors import UserError
from scout_exp.modes import frozen_eval

ImageLike = np.ndarray | str | os.PathLike[str]


class GalleryClassifier(nn.Module):
    """Scaled cosine similarity (B, C) between the L2-normalised embedding and C identity templates.

    The default ``scale`` of 10 turns the typical cosine gap between a mate and a non-mate (~0.3)
    into a logit gap of ~3: a confident but unsaturated softmax, as SCOUT's confidence scores need.
    """

    def __init__(self, embedder: nn.Module, templates: torch.Tensor, names: list[str], scale: float = 10.0) -> None:
        super().__init__()
        templates = torch.as_tensor(templates, dtype=torch.float32)
        if templates.ndim != 2 or templates.shape[0] != len(names):
            raise UserError(
                f"gallery templates must be (C, D) with one row per name; got {tuple(templates.shape)} "
                f"for {len(names)} names"
            )
        if len(set(names)) != len(names):
            raise UserError("gallery identity names must be unique")
        self.embedder = embedder
        self.names = list(names)
        self.scale = float(scale)
        self.fc = nn.Linear(templates.shape[1], templates.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(self.scale * F.normalize(templates, dim=1))

    @property
    def templates(self) -> torch.Tensor:
        """The unit-norm identity templates (C, D)."""
        return self.fc.weight.detach() / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.normalize(self.embedder(x), dim=1))


@torch.no_grad()
def embed_images(
    embedder: nn.Module,
    images: Sequence[ImageLike],
    preprocess: Callable[[np.ndarray], torch.Tensor],
    batch_size: int = 32,
) -> torch.Tensor:
    """L2-normalised embeddings (N, D) of images (uint8 RGB arrays or paths), in eval mode."""
    out = []
    with frozen_eval(embedder):
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            arrays = [read_rgb(im) if isinstance(im, (str, os.PathLike)) else to_rgb(im) for im in chunk]
            batch = torch.stack([preprocess(a) for a in arrays])
            device = next(embedder.parameters(), torch.empty(0)).device
            out.append(F.normalize(embedder(batch.to(device)), dim=1).cpu())
    return torch.cat(out)


def _gallery_from_folder(folder: Path) -> dict[str, list[Path]]:
    """``folder/<identity>/<image>`` -> {identity: image paths}; an empty gallery is a UserError."""
    if not folder.is_dir():
        raise UserError(f"gallery folder {folder} does not exist")
    gallery = {d.name: list_images(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    gallery = {name: paths for name, paths in gallery.items() if paths}
    if not gallery:
        raise UserError(f"gallery folder {folder} holds no images; put each identity's images in {folder}/<name>/")
    return gallery


def enrol(
    embedder: nn.Module,
    folder_or_images: str | os.PathLike[str] | Mapping[str, Sequence[ImageLike]],
    preprocess: Callable[[np.ndarray], torch.Tensor],
    scale: float = 10.0,
) -> GalleryClassifier:
    """Build a gallery: one template per identity, the mean of its images' L2-normalised embeddings.

    ``folder_or_images`` is a folder with one sub-folder of (aligned) images per identity, or a
    mapping ``{name: [images or paths]}``; ``preprocess`` turns a uint8 RGB image into the
    embedder's input tensor (e.g. :class:`scout_exp.data.transforms.Preprocess`).
    """
    if isinstance(folder_or_images, (str, os.PathLike)):
        gallery: Mapping[str, Sequence[ImageLike]] = _gallery_from_folder(Path(folder_or_images))
    else:
        gallery = folder_or_images
        empty = [name for name, images in gallery.items() if len(images) == 0]
        if not gallery or empty:
            which = f" for {', '.join(empty)}" if empty else ""
            raise UserError(f"gallery is empty{which}; give each identity at least one image")
    names = list(gallery)
    templates = torch.stack([embed_images(embedder, list(gallery[n]), preprocess).mean(dim=0) for n in names])
    return GalleryClassifier(embedder, templates, names, scale=scale)
