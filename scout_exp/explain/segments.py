"""Binary explanation segments from maps (SCOUT Eq. 8-9), by area fraction or by threshold."""

from __future__ import annotations

from torch import Tensor

from scout_exp.attribution.base import upsample
from scout_exp.metrics.parts import area_pixels, top_pixels

#: Area fractions of the official SCOUT protocol: 0.005, then 0.01 to 0.99 in steps of 0.01.
AREA_FRACTIONS: tuple[float, ...] = (0.005,) + tuple(round(0.01 * i, 2) for i in range(1, 100))


def segment_by_area(maps: Tensor, fraction: float, size: tuple[int, int] | None = None) -> Tensor:
    """Boolean masks keeping exactly ``round(fraction*H*W)`` top pixels of each map (..., H, W).

    Maps are first resized bilinearly to ``size`` (as the official code resizes to the input).
    Ties are broken deterministically: among equal values the lower row-major index wins
    (as a stable descending sort would; :func:`scout_exp.metrics.parts.top_pixels`), so the
    count is exact even for flat maps.
    """
    if size is not None:
        maps = upsample(maps.float(), size)
    h, w = maps.shape[-2:]
    return top_pixels(maps, area_pixels(fraction, h * w))


def segment_by_threshold(maps: Tensor, threshold: float) -> Tensor:
    """Boolean masks ``1[d > T]`` (Eq. 8-9)."""
    return maps > threshold
