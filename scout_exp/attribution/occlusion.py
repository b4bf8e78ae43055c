"""Occlusion: the score drop when a patch of the input is hidden (Zeiler & Fergus, ECCV 2014).

The simplest perturbation method. A ``window`` of pixels slides over the image with step
``stride``; each position gives one copy of the input with that patch set to ``baseline``. A
pixel's map value is the mean, over the copies that hide it, of ``s(x) - s(copy)``: positive where
hiding the pixel lowers the score (evidence for it), negative where it raises it. The last window
of a row or column is cut at the image border, so every pixel is hidden at least once
(``stride <= window``); the positions and the estimator are those of Captum's ``Occlusion``.
Cost: one forward per position and image, ``ceil((H - h) / s_h + 1) * ceil((W - w) / s_w + 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import register_attribution
from scout_exp.attribution.blackbox import BlackBoxAttribution
from scout_exp.errors import UserError


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """``value`` as (height, width) pixels: an int for a square, or two ints; UserError otherwise."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise UserError(
            f"occlusion's {what} (attribution.kwargs.{what}) must be an int or [height, width], got {value}"
        )
    if min(pair) < 1:
        raise UserError(f"occlusion's {what} (attribution.kwargs.{what}) must be >= 1 pixel, got {value}")
    return pair


@register_attribution("occlusion")
class Occlusion(BlackBoxAttribution):
    """Sliding-window occlusion maps (module docstring) of every target.

    Options: ``window`` and ``stride`` (pixels; an int or [height, width], ``1 <= stride <= window``;
    None: half the window, rounded up),
    ``baseline`` (the value of hidden pixels in normalised input units; 0 is the mean colour) and
    ``batch_size`` (masked images per forward). Bad values are one-line UserErrors, as is a window
    larger than the input.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        target_layer: str | nn.Module | None = None,
        window: int | Sequence[int] = 16,
        stride: int | Sequence[int] | None = None,
        baseline: float = 0.0,
        batch_size: int = 64,
    ) -> None:
        self.window = _pair(window, "window")
        self.stride = tuple(math.ceil(w / 2) for w in self.window) if stride is None else _pair(stride, "stride")
        if any(s > w for s, w in zip(self.stride, self.window)):
            raise UserError(
                f"occlusion's stride {list(self.stride)} must not exceed its window {list(self.window)}: "
                "every pixel must be hidden at least once"
            )
        super().__init__(model, target_layer, batch_size)
        self.baseline = float(baseline)

    def describe(self) -> str:
        """E.g. ``occlusion (window 16x16, stride 8x8, baseline 0)``."""
        (h, w), (sh, sw) = self.window, self.stride
        return f"occlusion (window {h}x{w}, stride {sh}x{sw}, baseline {self.baseline:g})"

    def masks(self, size: tuple[int, int]) -> Tensor:
        """(M, H, W) masks, 0 on one window position each (row-major over the positions)."""
        if any(w > n for w, n in zip(self.window, size)):
            raise UserError(
                f"occlusion's window {list(self.window)} is larger than the {size[0]}x{size[1]} input; "
                "set attribution.kwargs.window smaller"
            )
        hidden = [self._hidden(n, w, s) for n, w, s in zip(size, self.window, self.stride)]
        rows, cols = hidden
        both = rows[:, None, :, None] & cols[None, :, None, :]
        return 1 - both.reshape(-1, *size).float()

    @staticmethod
    def _hidden(n: int, window: int, stride: int) -> Tensor:
        """(positions, n) bool: the pixels of one axis that each window position hides."""
        starts = torch.arange(math.ceil((n - window) / stride) + 1) * stride
        pixels = torch.arange(n)
        return (pixels[None] >= starts[:, None]) & (pixels[None] < starts[:, None] + window)
