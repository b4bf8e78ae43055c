"""Part-based localisation scores from ONE sort of each map: SCOUT's precision/recall PR curve.

SCOUT's protocol (see ``docs/metrics.md``) keeps the top fraction ``f`` of a map's pixels and asks
which parts the segment covers; a part counts as inside when the segment covers at least
``min_coverage`` of its visible pixels. Sweeping ``f`` over 100 fractions used to cost 100 resizes,
sorts and part counts per image. Here each map is sorted once (stable, descending: among equal
values the lower row-major index wins, exactly like :func:`scout_exp.explain.segments.segment_by_area`)
and, for every part, the rank at which its ``ceil(min_coverage * size)``-th pixel enters gives the
smallest segment that holds it (:func:`entry_ranks`); every fraction is then one comparison.
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


def top_pixels(maps: Tensor, k: int) -> Tensor:
    """Boolean masks (..., H, W) of the ``k`` largest pixels of each map (..., H, W).

    Among equal values the lower row-major index wins, so the mask is exactly the first ``k`` of a
    stable descending sort, but found in linear time: the ``k``-th largest value by
    ``torch.kthvalue`` (a selection, about 7x faster than the sort at 112x112 on a CPU), then the
    tied pixels in row-major order until ``k`` are kept. A test checks it against the sort.
    """
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, h * w)
    n = h * w
    if k <= 0 or k >= n:
        return torch.full_like(flat, k > 0, dtype=torch.bool).reshape(*lead, h, w)
    kth = torch.kthvalue(flat, n - k + 1, dim=1, keepdim=True).values
    mask = flat > kth
    tie = flat == kth
    room = k - mask.sum(1, keepdim=True, dtype=torch.int32)  # (an int32 sum of bools is 4x faster than int64)
    rows = (tie.sum(1, keepdim=True, dtype=torch.int32) > room).flatten()  # where some tied pixels are left out
    kept = tie.clone()
    kept[rows] &= torch.cumsum(tie[rows], 1) <= room[rows]
    return (mask | kept).reshape(*lead, h, w)


def pixel_ranks(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) rank of each pixel when sorted by the map resized to ``size``, 0 = most important.

    The sort is stable and descending: among equal values the lower row-major index ranks first,
    exactly like :func:`scout_exp.explain.segments.segment_by_area`.
    """
    b = maps.shape[0]
    flat = resize_maps(maps, size).reshape(b, -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1]).expand(b, -1).contiguous())
    return ranks.reshape(b, *size)


def entry_ranks(maps: Tensor, part_maps: Tensor, num_parts: int, min_coverage: float = 0.5) -> Tensor:
    """(B, P) smallest number of top pixels whose segment holds each part (``inf``: part not visible).

    ``maps`` (B, h, w) are resized to the part maps' (B, H, W) size; ``part_maps`` hold part
    indices ``0..P-1`` per pixel, anything else is background. Part ``p`` is inside the top-``k``
    segment iff ``k >= entry_ranks[:, p]``. Two sorts per map and no (B, H*W, P) tensor: the pixels'
    ranks are sorted by part, so each part's ranks form one ascending block whose
    ``ceil(min_coverage * size)``-th entry is the rank sought.
    """
    b, h, w = part_maps.shape
    n = h * w
    ranks = pixel_ranks(maps, (h, w)).reshape(b, -1)
    labels = part_maps.reshape(b, -1).long()
    labels = torch.where((labels >= 0) & (labels < num_parts), labels, num_parts)
    total = torch.zeros(b, num_parts + 1, dtype=torch.long).scatter_add_(1, labels, torch.ones_like(labels))
    by_part = torch.sort(labels * n + ranks, dim=1).values  # blocks of each part's ranks, ascending
    start = torch.cumsum(total, 1) - total
    need = torch.ceil(min_coverage * total.double()).clamp(min=1).long()
    pos = (start + need - 1)[:, :num_parts].clamp(max=n - 1)
    entry = (torch.gather(by_part, 1, pos) - torch.arange(num_parts) * n + 1).double()
    return torch.where(total[:, :num_parts] > 0, entry, torch.full_like(entry, math.inf))


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
    precision, recall = _precision_recall(inside, discriminative[:, None, :], torch.isfinite(ranks)[:, None, :])
    return precision, recall, inside


def part_pixels(part_maps: Tensor, num_parts: int, segments: Tensor | None = None) -> Tensor:
    """(..., B, P) visible pixels of each part, or with ``segments`` those inside the segments.

    ``part_maps`` (B, H, W) hold part indices ``0..P-1`` (anything else is background);
    ``segments`` (..., B, H, W) bool, any leading dimensions (e.g. chance draws). One bincount per
    (B, H, W) set of segments.
    """
    b = part_maps.shape[0]
    labels = part_maps.reshape(b, -1).long()
    labels = labels.masked_fill((labels < 0) | (labels >= num_parts), num_parts)
    labels += torch.arange(b)[:, None] * (num_parts + 1)  # one bin per (image, part)
    bins = b * (num_parts + 1)
    if segments is None:
        return torch.bincount(labels.flatten(), minlength=bins).view(b, -1)[:, :num_parts]
    lead = segments.shape[:-3]
    counts = [torch.bincount(labels[s], minlength=bins) for s in segments.reshape(-1, *labels.shape)]
    return torch.stack(counts).view(*lead, b, -1)[..., :num_parts]


def segment_precision_recall(
    segments: Tensor, part_maps: Tensor, discriminative: Tensor, min_coverage: float = 0.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Part precision and recall (..., B) of (..., B, H, W) bool segments, and the parts inside (..., B, P).

    The same rule and numbers as one fraction of :func:`pr_curves` applied to the segments that
    :func:`top_pixels` keeps, without sorting: a part is inside when the segment holds at least
    ``ceil(min_coverage * size)`` of its visible pixels. Leading dimensions (e.g. chance draws)
    share the part maps.
    """
    p = discriminative.shape[1]
    total = part_pixels(part_maps, p)
    held = part_pixels(part_maps, p, segments)
    need = torch.ceil(min_coverage * total.double()).clamp(min=1)
    inside = (total > 0) & (held >= need)
    precision, recall = _precision_recall(inside, discriminative, total > 0)
    return precision, recall, inside


def _precision_recall(inside: Tensor, discriminative: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
    """Precision and recall over the last (part) axis of bool ``inside`` (NaN where undefined)."""
    disc = discriminative.bool()
    n_inside = inside.sum(-1).double()
    hits = (inside & disc).sum(-1).double()
    n_disc = (disc & visible).sum(-1).double()
    nan = torch.tensor(math.nan, dtype=torch.float64)
    precision = torch.where(n_inside > 0, hits / n_inside.clamp(min=1), nan)
    recall = torch.where(n_disc > 0, hits / n_disc.clamp(min=1), nan)
    return precision, recall


def whole_face_precision_recall(part_maps: Tensor, discriminative: Tensor) -> tuple[Tensor, Tensor]:
    """Chance row "the whole face": the segment is every visible part; (B,) precision and recall.

    precision = visible discriminative parts / visible parts; recall = 1 (NaN without any).
    """
    visible = part_pixels(part_maps, discriminative.shape[1]) > 0
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
