"""Chance maps: what a localisation score reaches without an explanation (see ``docs/metrics.md``).

Every score is reported beside the same score for (1) random maps drawn at the target layer's
resolution (uniform values, upsampled like real maps; the score is averaged over draws), (2) the
whole face (every visible part, :func:`scout_exp.metrics.parts.whole_face_precision_recall`) and
(3) a centre prior, a Gaussian at the face centre.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_maps(batch: int, size: tuple[int, int], draws: int, generator: torch.Generator) -> Tensor:
    """(draws, batch, h, w) i.i.d. uniform maps at the target layer's resolution ``size``."""
    return torch.rand(draws, batch, *size, generator=generator)


def centre_prior(batch: int, size: tuple[int, int], centre: tuple[float, float], sigma: float = 0.25) -> Tensor:
    """(batch, h, w) isotropic Gaussian at ``centre`` = (x, y) as fractions of the width and height.

    ``sigma`` is a fraction of the image side. Pixel centres are at ``(i + 0.5) / n``.
    """
    h, w = size
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h - centre[1]
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w - centre[0]
    g = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return g.expand(batch, h, w).clone()
