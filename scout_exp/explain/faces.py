"""Face photographs for explanation runs: load (files or ``sample:NAME``), align, jitter, enrol a gallery.

``explain.py align=<template>`` runs MTCNN and the similarity alignment of
:mod:`scout_exp.data.align` on every image before the recogniser's preprocessing; grayscale and
RGBA files are converted to RGB. The gallery of an embedding recogniser is enrolled from
``gallery.folder`` (``<folder>/<identity>/<images>``) and/or ``gallery.identities``
(``{name: [images]}``), each identity's template being the mean L2-normalised embedding of its
(aligned, optionally jittered) images (:func:`scout_exp.models.gallery.enrol`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from scout_exp.data.align import ImageTooSmallError, NoFaceError, align_face, get_template, list_images
from scout_exp.data.images import IMAGE_EXTENSIONS, read_rgb
from scout_exp.data.samples import is_sample, sample_image, sample_name
from scout_exp.errors import UserError
from scout_exp.models.gallery import GalleryClassifier, enrol


def check_image_spec(spec: str) -> None:
    """Refuse a missing file or an unknown ``sample:NAME`` up front, naming it."""
    if is_sample(spec):
        sample_name(spec)
    elif not Path(spec).is_file():
        raise UserError(f"image {spec} does not exist; pass images=[path1,path2] with existing files")


class FaceLoader:
    """uint8 RGB images of file paths or ``sample:NAME``, aligned onto ``align`` (a template name) when set.

    The last ``cache_size`` results are kept, since pairs and galleries often repeat an image.
    """

    def __init__(self, align: str | None = None, detector: Any = None, cache_size: int = 64) -> None:
        if align is not None:
            get_template(align)
        self.align = align
        self.detector = detector
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    def read(self, spec: str) -> np.ndarray:
        """The photo as uint8 RGB, not aligned."""
        return sample_image(spec) if is_sample(spec) else read_rgb(spec)

    def __call__(self, spec: str) -> np.ndarray:
        """The (aligned) face of ``spec``."""
        return self.source_and_matrix(spec)[0] if self.align is None else self._aligned(spec)

    def source_and_matrix(self, spec: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The photo and the 2x3 matrix mapping it onto the template (None without alignment)."""
        key = str(spec)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        image = self.read(key)
        matrix = None
        if self.align is not None:
            try:
                matrix = align_face(image, self.align, self.detector).matrix
            except ImageTooSmallError as err:
                raise UserError(f"{key}: {err}") from None
            except NoFaceError:  # reliability (issue 12): other errors (too small) keep their own message
                raise UserError(
                    f"no face found in image {key}; use a photo with a visible, roughly frontal face "
                    "(or align=null for crops that are already aligned)"
                ) from None
        self._cache[key] = (image, matrix)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image, matrix

    def _aligned(self, spec: str) -> np.ndarray:
        image, matrix = self.source_and_matrix(spec)
        size = get_template(self.align).size  # type: ignore[arg-type]
        return _warp(image, matrix, (size, size))

    def views(self, spec: str, jitter: int = 0, seed: int = 0) -> list[np.ndarray]:
        """The (aligned) face and ``jitter`` perturbed copies of it (:func:`jitter_matrix`)."""
        image, matrix = self.source_and_matrix(spec)
        if matrix is None:
            size = (image.shape[1], image.shape[0])
            matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        else:
            side = get_template(self.align).size  # type: ignore[arg-type]
            size = (side, side)
        rng = np.random.default_rng(seed)
        views = [_warp(image, matrix, size)]
        for k in range(jitter):
            view = _warp(image, jitter_matrix(rng, size) @ np.vstack([matrix, [0.0, 0.0, 1.0]]), size)
            if k % 2 == 0:
                view = np.ascontiguousarray(view[:, ::-1])
            gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-15.0, 15.0)
            views.append(np.clip(view.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8))
        return views


def jitter_matrix(
    rng: np.random.Generator, size: tuple[int, int], shift: float = 0.04, zoom: float = 0.05, degrees: float = 4.0
) -> np.ndarray:
    """A random similarity (2x3) about the centre of a ``size`` (w, h) crop: small shift, zoom and rotation."""
    w, h = size
    angle = math.radians(rng.uniform(-degrees, degrees))
    scale = rng.uniform(1.0 - zoom, 1.0 + zoom)
    a, b = scale * math.cos(angle), scale * math.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    tx, ty = rng.uniform(-shift, shift) * w, rng.uniform(-shift, shift) * h
    return np.array([[a, -b, cx - a * cx + b * cy + tx], [b, a, cy - b * cx - a * cy + ty]])


def _warp(image: np.ndarray, matrix: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    if matrix is None:
        return image
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64)[:2],
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def has_gallery(gallery_cfg: Mapping[str, Any] | None) -> bool:
    """Whether the config enrols any identity (a folder or a non-empty ``identities`` mapping)."""
    if not gallery_cfg:
        return False
    return bool(gallery_cfg.get("folder") or gallery_cfg.get("identities"))


def gallery_images(gallery_cfg: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{identity: [image specs]}`` from ``folder`` (sub-folder per identity) and ``identities``."""
    found: dict[str, list[str]] = {}
    folder = gallery_cfg.get("folder")
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"gallery folder {root} does not exist; pass gallery.folder=<folder>/<identity>/<images>")
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            images = [str(p) for p in list_images(sub)]
            if images:
                found[sub.name] = images
        if not found:
            raise UserError(
                f"gallery folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}); put each "
                f"identity's images in {root}/<name>/"
            )
    for name, images in (gallery_cfg.get("identities") or {}).items():
        specs = [images] if isinstance(images, str) else list(images or [])
        if not specs:
            raise UserError(f"gallery identity {name!r} has no images; give it at least one")
        if str(name) in found:
            raise UserError(f"gallery identity {name!r} is both a folder in {folder} and in gallery.identities")
        for spec in specs:
            check_image_spec(str(spec))
        found[str(name)] = [str(s) for s in specs]
    return found


def enrol_gallery(
    gallery_cfg: Mapping[str, Any],
    embedder: nn.Module,
    preprocess: Callable[[np.ndarray], torch.Tensor],
    detector: Any = None,
) -> GalleryClassifier:
    """Enrol the configured identities on ``embedder``: one template per identity (scaled-cosine logits)."""
    loader = FaceLoader(gallery_cfg.get("align"), detector)
    jitter = int(gallery_cfg.get("jitter") or 0)
    images: dict[str, Sequence[np.ndarray]] = {
        name: [view for n, spec in enumerate(specs) for view in loader.views(spec, jitter, seed=n)]
        for name, specs in gallery_images(gallery_cfg).items()
    }
    return enrol(embedder, images, preprocess, scale=float(gallery_cfg.get("scale") or 10.0))
