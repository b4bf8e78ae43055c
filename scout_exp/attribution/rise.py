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
of a pair it is RISE on the similarity score (docs/verification.md); it is not CorrRISE (Lu et al.,
WACV 2024), which ranks the scores and correlates them with patch masks
(:mod:`scout_exp.attribution.corrrise`, ``attribution=corrrise``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scout_exp.attribution.base import register_attribution
from scout_exp.attribution.blackbox import BlackBoxAttribution
from scout_exp.errors import UserError


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


@register_attribution("rise")
class RISE(BlackBoxAttribution):
    """RISE maps (module docstring) of every target, from ``masks`` random masks of ``seed``.

    Options: ``masks`` (N >= 2), ``grid`` (cells per side, >= 1), ``keep`` (p in (0, 1)),
    ``batch_size`` (masked images per forward) and ``seed`` (the same masks for every image and
    every call). Bad values are one-line UserErrors.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        target_layer: str | nn.Module | None = None,
        masks: int = 1000,
        grid: int = 7,
        keep: float = 0.5,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        if masks < 2:
            raise UserError(f"rise needs at least 2 masks (attribution.kwargs.masks), got {masks}")
        if grid < 1:
            raise UserError(f"rise's mask grid (attribution.kwargs.grid) must be >= 1 cell, got {grid}")
        if not 0 < keep < 1:
            raise UserError(f"rise's keep probability (attribution.kwargs.keep) must be in (0, 1), got {keep}")
        super().__init__(model, target_layer, batch_size)
        self.n_masks, self.grid, self.keep, self.seed = int(masks), int(grid), float(keep), int(seed)

    def describe(self) -> str:
        """E.g. ``RISE (1000 masks, grid 7, keep 0.5)``."""
        return f"RISE ({self.n_masks} masks, grid {self.grid}, keep {self.keep})"

    def masks(self, size: tuple[int, int]) -> Tensor:
        """The (N, H, W) masks of :func:`rise_masks`, drawn from ``seed`` on every call."""
        return rise_masks(self.n_masks, self.grid, self.keep, size, torch.Generator().manual_seed(self.seed))

    def estimate(self, scores: Tensor, masks: Tensor, unmasked: Tensor) -> Tensor:
        """Mean-centred RISE maps: (B, T, N) scores and (N, H, W) masks -> (B, T, H, W) (module docstring)."""
        centred = scores - scores.mean(dim=-1, keepdim=True)
        return torch.einsum("btn,nhw->bthw", centred, masks) / (masks.shape[0] * self.keep)
