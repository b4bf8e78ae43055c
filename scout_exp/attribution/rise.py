"""RISE: black-box saliency of any score by randomised input masks (Petsiuk et al., BMVC 2018).

The model is only called, never opened: no layer, no gradient. ``N`` binary masks are drawn on a
coarse ``grid x grid`` lattice with keep probability ``p``, upsampled bilinearly to
``(grid + 1) * cell`` pixels (``cell = ceil(size / grid)``) and cropped at a random shift of up to
one cell, so their edges fall anywhere (RISE section 3.2). For a score ``s`` of each masked
input ``M_n * x`` (masked pixels set to 0, the mean colour after normalisation), the map is

    S_ij = 1 / (N p) * sum_n (s_n - s_bar) M_n,ij,     s_bar = 1/N sum_n s_n,

RISE's mask-weighted mean of the score (its Eq. 6, Monte-Carlo form) with the mean score
subtracted. The subtraction removes the constant ``s_bar E[M]/p`` that RISE's map carries
everywhere, so the sign means something: ``S > 0`` where keeping the pixel raises the score,
``S < 0`` where it lowers it, and the map of ``-s`` is ``-S``. Applied to the cosine similarity
of a pair it is the black-box similarity map of CorrRISE (Lu et al., WACV 2024; docs/verification.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from scout_exp.errors import UserError

#: scores of masked copies: (n, C, H, W) masked images and (n,) sample ids -> (n,) scores
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def check_rise_settings(masks: int, grid: int, keep: float, batch_size: int) -> None:
    """One-line errors for settings RISE cannot use."""
    if masks < 2:
        raise UserError(f"rise needs at least 2 masks (attribution.kwargs.masks), got {masks}")
    if grid < 1:
        raise UserError(f"rise's mask grid (attribution.kwargs.grid) must be >= 1 cell, got {grid}")
    if not 0 < keep < 1:
        raise UserError(f"rise's keep probability (attribution.kwargs.keep) must be in (0, 1), got {keep}")
    if batch_size < 1:
        raise UserError(f"rise's batch_size must be >= 1, got {batch_size}")


def rise_masks(
    n: int, grid: int, keep: float, size: tuple[int, int], generator: torch.Generator | None = None
) -> Tensor:
    """``n`` RISE masks of ``size`` (float in [0, 1], shape (n, H, W)), drawn on CPU with ``generator``."""
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    coarse = (torch.rand(n, 1, grid, grid, generator=generator) < keep).float()
    up = F.interpolate(coarse, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False)
    dy = torch.randint(0, cell_h, (n,), generator=generator)
    dx = torch.randint(0, cell_w, (n,), generator=generator)
    rows = dy[:, None] + torch.arange(h)[None]  # (n, H)
    cols = dx[:, None] + torch.arange(w)[None]  # (n, W)
    return up[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]]


def rise_maps(score_fn: ScoreFn, images: Tensor, masks: Tensor, keep: float, batch_size: int = 64) -> Tensor:
    """Mean-centred RISE maps (B, H, W) of ``images`` (B, C, H, W) with ``masks`` (N, H, W) (module docstring).

    ``score_fn`` is called on at most ``batch_size`` masked images at a time, with the id of the
    sample each copy comes from, and runs under ``torch.no_grad``.
    """
    b, n = images.shape[0], masks.shape[0]
    masks = masks.to(images.device, images.dtype)
    scores = torch.empty(b * n, device=images.device, dtype=images.dtype)
    with torch.no_grad():
        for start in range(0, b * n, batch_size):
            k = torch.arange(start, min(start + batch_size, b * n), device=images.device)
            sample, mask = k // n, k % n
            s = score_fn(images[sample] * masks[mask][:, None], sample)
            scores[k] = s.reshape(-1).to(scores.dtype)
    scores = scores.reshape(b, n)
    centred = scores - scores.mean(dim=1, keepdim=True)
    return torch.einsum("bn,nhw->bhw", centred, masks) / (n * keep)
