"""Part-based localisation scores from ONE sort of each map: SCOUT's precision/recall PR curve.

SCOUT's protocol (see ``docs/metrics.md``) keeps the top fraction ``f`` of a map's pixels and asks
which parts the segment covers; a part counts as inside when the segment covers at least
``min_coverage`` of its visible pixels. Sweeping ``f`` over 100 fractions used to cost 100 resizes,
sorts and part counts per image. Here each map is sorted once (stable, descending: among equal
values the lower row-major index wins, exactly like :func:`scout_exp.explain.segments.segment_by_area`)
and, for every part, the rank at which its ``ceil(min_coverage * size)``-th pixel enters gives the
smallest segment that holds it; every fraction is then one comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def area_pixels(fraction: float, n_pixels: int) -> int:
    """Pixels kept for ``fraction`` of ``n_pixels``: round half up of ``fraction * n`` (SCOUT's protocol)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"area fraction must lie in [0, 1], got {fraction}")
    return min(n_pixels, int(math.floor(fraction * n_pixels + 0.5)))


def resize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (half-pixel centres, like cv2.resize) of (..., h, w) maps to ``size``."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=tuple(size), mode="bilinear")
    return out.reshape(*lead, *out.shape[-2:])


def entry_ranks(maps: Tensor, part_maps: Tensor, num_parts: int, min_coverage: float = 0.5) -> Tensor:
    """(B, P) smallest number of top pixels whose segment holds each part (``inf``: part not visible).

    ``maps`` (B, h, w) are resized to the part maps' (B, H, W) size; ``part_maps`` hold part
    indices ``0..P-1`` per pixel, anything else is background. Part ``p`` is inside the top-``k``
    segment iff ``k >= entry_ranks[:, p]``.
    """
    b, h, w = part_maps.shape
    order = torch.sort(resize_maps(maps, (h, w)).reshape(b, -1), dim=1, descending=True, stable=True).indices
    labels = torch.gather(part_maps.reshape(b, -1).long(), 1, order)
    valid = (labels >= 0) & (labels < num_parts)
    onehot = torch.zeros(b, h * w, num_parts + 1, dtype=torch.int32)
    onehot.scatter_(2, torch.where(valid, labels, num_parts)[..., None], 1)
    cum = torch.cumsum(onehot[..., :num_parts], dim=1)  # (B, HW, P): part pixels among the top k+1
    total = cum[:, -1]  # (B, P)
    need = torch.ceil(min_coverage * total.double()).clamp(min=1).to(torch.int32)
    ranks = (cum < need[:, None, :]).sum(dim=1).double() + 1  # 1-based rank of the needed pixel
    return torch.where(total > 0, ranks, torch.full_like(ranks, math.inf))


def pr_curves(
    maps: Tensor,
    part_maps: Tensor,
    discriminative: Tensor,
    fractions: Sequence[float],
    min_coverage: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Part precision and recall (B, F) of the top-``f`` segments, and which parts are inside (B, F, P).

    ``discriminative`` (B, P) bool marks the ground-truth parts. precision = discriminative parts
    inside / parts inside (NaN when none is inside); recall = discriminative parts inside / visible
    discriminative parts (NaN when none is visible). Same numbers as sweeping
    :func:`scout_exp.explain.evaluation.part_precision_recall` over ``segment_by_area`` masks.
    """
    b, h, w = part_maps.shape
    p = discriminative.shape[1]
    ranks = entry_ranks(maps, part_maps, p, min_coverage)
    ks = torch.tensor([area_pixels(f, h * w) for f in fractions], dtype=torch.float64)
    inside = ks[None, :, None] >= ranks[:, None, :]  # (B, F, P)
    disc = discriminative.bool()[:, None, :]
    n_inside = inside.sum(-1).double()
    hits = (inside & disc).sum(-1).double()
    n_disc = (discriminative.bool() & torch.isfinite(ranks)).sum(-1).double()[:, None]
    nan = torch.tensor(math.nan, dtype=torch.float64)
    precision = torch.where(n_inside > 0, hits / n_inside.clamp(min=1), nan)
    recall = torch.where(n_disc > 0, hits / n_disc.clamp(min=1), nan)
    return precision, recall, inside


def whole_face_precision_recall(part_maps: Tensor, discriminative: Tensor) -> tuple[Tensor, Tensor]:
    """Chance row "the whole face": the segment is every visible part; (B,) precision and recall.

    precision = visible discriminative parts / visible parts; recall = 1 (NaN without any).
    """
    p = discriminative.shape[1]
    labels = part_maps.reshape(part_maps.shape[0], -1).long()
    visible = torch.stack([(labels == k).any(1) for k in range(p)], 1)
    n_vis = visible.sum(1).double()
    hits = (visible & discriminative.bool()).sum(1).double()
    nan = torch.tensor(math.nan, dtype=torch.float64)
    return torch.where(n_vis > 0, hits / n_vis.clamp(min=1), nan), torch.where(hits > 0, hits / hits, nan)


def part_mass(maps: Tensor, part_maps: Tensor, num_parts: int) -> Tensor:
    """(B, P) attribution mass per part: the SUM of the map's positive part over the part's visible pixels.

    Maps are resized to the part maps' size first and then divided by their total positive mass,
    so a part's mass is the share of the explanation that lies on it (0 for invisible parts).
    """
    b, h, w = part_maps.shape
    m = resize_maps(maps, (h, w)).clamp(min=0).reshape(b, -1).double()
    labels = part_maps.reshape(b, -1).long()
    valid = (labels >= 0) & (labels < num_parts)
    mass = torch.zeros(b, num_parts + 1, dtype=torch.float64)
    mass.scatter_add_(1, torch.where(valid, labels, num_parts), m)
    return mass[:, :num_parts] / m.sum(1, keepdim=True).clamp(min=1e-30)
