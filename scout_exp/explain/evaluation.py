"""SCOUT's part-based evaluation (METHOD section 1), adapted from keypoints to per-pixel part maps.

CUB's protocol counts a part as inside a region when its keypoint is. With a part map (one label
per pixel) the analogue used here is coverage: a part is inside the segment when the segment
covers at least ``min_coverage`` of the part's visible pixels (default 0.5: most of the part).
Undefined ratios (0/0) are NaN, as in the official code, which averages with ``nanmean``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from scout_exp.errors import UserError
from scout_exp.explain.segments import AREA_FRACTIONS, segment_by_area

ArrayLike = np.ndarray | Tensor


def _numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def parts_inside(
    segment: ArrayLike, part_map: ArrayLike, part_names: Sequence[str], min_coverage: float = 0.5
) -> set[str]:
    """Names of the visible parts whose pixels the boolean ``segment`` covers by >= ``min_coverage``.

    ``part_map[i, j] = k`` puts pixel (i, j) in ``part_names[k]``; any value outside
    ``[0, len(part_names))`` (e.g. -1) is background.
    """
    seg, parts = _numpy(segment).astype(bool), _numpy(part_map).astype(np.int64)
    if seg.shape != parts.shape:
        raise UserError(f"segment {seg.shape} and part map {parts.shape} must have the same shape")
    n = len(part_names)
    valid = (parts >= 0) & (parts < n)
    total = np.bincount(parts[valid], minlength=n)
    covered = np.bincount(parts[valid & seg], minlength=n)
    return {part_names[k] for k in range(n) if total[k] > 0 and covered[k] >= min_coverage * total[k]}


def visible_parts(part_map: ArrayLike, part_names: Sequence[str]) -> set[str]:
    """Names of the parts with at least one pixel in ``part_map``."""
    labels = np.unique(_numpy(part_map))
    return {part_names[int(k)] for k in labels if 0 <= k < len(part_names)}


def part_precision_recall(
    segment: ArrayLike,
    part_map: ArrayLike,
    part_names: Sequence[str],
    discriminative: Iterable[str],
    min_coverage: float = 0.5,
) -> tuple[float, float]:
    """(precision, recall) of a segment against the discriminative parts (METHOD section 1).

    precision = discriminative parts inside / all parts inside (NaN when no part is inside);
    recall = discriminative parts inside / visible discriminative parts (NaN when none is visible).
    """
    disc = set(discriminative)
    unknown = disc - set(part_names)
    if unknown:
        raise UserError(f"discriminative parts {sorted(unknown)} are not in part_names {list(part_names)}")
    inside = parts_inside(segment, part_map, part_names, min_coverage)
    disc_visible = disc & visible_parts(part_map, part_names)
    hits = len(inside & disc_visible)
    precision = hits / len(inside) if inside else float("nan")
    recall = hits / len(disc_visible) if disc_visible else float("nan")
    return precision, recall


def pr_curve(
    attribution_map: ArrayLike,
    part_map: ArrayLike,
    part_names: Sequence[str],
    discriminative: Iterable[str],
    fractions: Sequence[float] = AREA_FRACTIONS,
    min_coverage: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall arrays over area ``fractions``: the map is resized to the part map's size.

    The reference protocol, one segment per fraction; explain.py uses the equivalent batched
    :func:`scout_exp.metrics.parts.pr_curves` (one sort per map, tested against this function).
    """
    size = tuple(_numpy(part_map).shape)
    amap = torch.as_tensor(_numpy(attribution_map), dtype=torch.float32)
    disc = list(discriminative)
    precision, recall = np.empty(len(fractions)), np.empty(len(fractions))
    for i, frac in enumerate(fractions):
        seg = segment_by_area(amap, frac, size=size)
        precision[i], recall[i] = part_precision_recall(seg, part_map, part_names, disc, min_coverage)
    return precision, recall


def part_iou(parts_a: Iterable[str], parts_b: Iterable[str]) -> float:
    """PIoU (Eq. 14): IoU of the part sets covered by r(x) and r(x^c); NaN when both are empty."""
    a, b = set(parts_a), set(parts_b)
    union = a | b
    return len(a & b) / len(union) if union else float("nan")
