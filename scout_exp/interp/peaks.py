"""Average peak locations of filters over a set of faces, their spread ``d``, and the figure.

Follows the reference's ``average_location.m`` (docs/method.md section 4): for each face and filter,
the location of the largest positive (``sign="pos"``) or most negative (``"neg"``) response,
weighted by its magnitude; faces without such a response are skipped for that filter.

Definitions (all in pixels of the input, e.g. 96x96):

- average location of filter j: ``mu_j = sum_i w_ij p_ij / sum_i w_ij`` with ``p_ij`` the peak
  location on face i and ``w_ij = |peak value|``;
- deviation of filter j (the colour of the paper's dots): ``sum_i w_ij ||p_ij - mu_j|| / sum_i w_ij``;
- spread ``d`` (the number printed in the paper's figure, "d quantifies the average locations
  spreadness"): the mean Euclidean distance of the filters' average locations ``mu_j`` from
  their centroid. The paper gives no formula; the reference script computes only ``mu_j`` and
  the deviations, so we take the natural dispersion of the plotted dots, which grows when
  filters specialise on different face parts, as the paper's d does (6.9 base < 17.1 SAD < 18.7
  SAD + FAD).

A peak at map cell (row r, column c) of an h x w map is placed at the cell centre
``((c + 0.5) W / w, (r + 0.5) H / h)`` of the H x W input (the reference uses ``4 r`` with
1-based indices, a shift of up to 2 px).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from scout_exp.interp.occlusion import apply_transform, fit_transform
from scout_exp.io import save_figure
from scout_exp.plotting import pyplot


class PeakStats(NamedTuple):
    """Per-filter average peak location (C, 2) as (x, y), deviation (C,), face count (C,), spread d."""

    locations: torch.Tensor
    deviations: torch.Tensor
    counts: torch.Tensor
    spread: float


def peak_points(
    maps: torch.Tensor, sign: str = "pos", input_size: tuple[int, int] = (96, 96)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per face and filter: peak location (N, C, 2) in input pixels and weight (N, C) = |peak|,
    0 where the face has no response of that sign. Ties go to the first cell in row-major order."""
    n, c, h, w = maps.shape
    flat = maps.detach().reshape(n, c, h * w).to(torch.float64)
    if sign == "pos":
        value, index = flat.max(dim=-1)
        weight = value.clamp_min(0)
    elif sign == "neg":
        value, index = flat.min(dim=-1)
        weight = (-value).clamp_min(0)
    else:
        raise ValueError(f"sign must be 'pos' or 'neg', got {sign!r}")
    rows, cols = (index // w).to(torch.float64), (index % w).to(torch.float64)
    x = (cols + 0.5) * (input_size[1] / w)
    y = (rows + 0.5) * (input_size[0] / h)
    return torch.stack([x, y], dim=-1), weight


def peak_locations(
    maps: torch.Tensor,
    sign: str = "pos",
    input_size: tuple[int, int] = (96, 96),
    landmarks: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> PeakStats:
    """Average peak locations, deviations and spread of the filters of ``maps`` (N, C, h, w).

    With ``landmarks`` (N, K, 2, input pixels) and ``reference`` (K, 2), each face's peaks are
    first mapped to the reference frame by a least-squares similarity (the reference code uses a
    piecewise-affine warp to a frontal face for the same purpose).
    """
    points, weight = peak_points(maps, sign, input_size)
    if landmarks is not None:
        if reference is None:
            raise ValueError("landmarks need a reference landmark set")
        lm = torch.as_tensor(landmarks, dtype=torch.float64)
        ref = torch.as_tensor(reference, dtype=torch.float64).expand(lm.shape[0], -1, -1)
        points = apply_transform(fit_transform(lm, ref, "similarity"), points)
    total = weight.sum(dim=0)
    safe = total.clamp_min(torch.finfo(torch.float64).tiny)
    mean = (weight.unsqueeze(-1) * points).sum(dim=0) / safe.unsqueeze(-1)
    dist = (points - mean.unsqueeze(0)).norm(dim=-1)
    deviation = (weight * dist).sum(dim=0) / safe
    valid = total > 0
    mean[~valid] = float("nan")
    deviation[~valid] = float("nan")
    counts = (weight > 0).sum(dim=0)
    spread = spread_of(mean[valid])
    return PeakStats(mean, deviation, counts, spread)


def spread_of(locations: torch.Tensor) -> float:
    """Mean distance of the points (C, 2) from their centroid (the ``d`` of the module docstring)."""
    if locations.shape[0] == 0:
        return float("nan")
    centroid = locations.mean(dim=0, keepdim=True)
    return float((locations - centroid).norm(dim=-1).mean())


def mean_face(images: torch.Tensor) -> np.ndarray:
    """Average of a batch (N, 3, H, W) with pixels in [-1, 1], as a uint8 RGB image (H, W, 3)."""
    avg = images.detach().to(torch.float64).mean(dim=0).permute(1, 2, 0).cpu().numpy()
    return np.clip(np.rint((avg + 1.0) * 127.5), 0, 255).astype(np.uint8)


def plot_peaks(
    face: np.ndarray,
    locations: torch.Tensor | np.ndarray,
    path: str | os.PathLike[str],
    deviations: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Paper-style figure: one dot per filter at its average peak location on ``face`` (H, W, 3
    uint8), coloured by its deviation when given (jet colour map, with colour bar). Saved atomically."""
    loc = np.asarray(locations, dtype=np.float64)
    keep = np.isfinite(loc).all(axis=1)
    fig, ax = pyplot().subplots(figsize=(4, 4))
    h, w = face.shape[:2]
    ax.imshow(face, extent=(0, w, h, 0))
    if deviations is None:
        ax.scatter(loc[keep, 0], loc[keep, 1], s=8, c="red")
    else:
        dev = np.asarray(deviations, dtype=np.float64)[keep]
        sc = ax.scatter(loc[keep, 0], loc[keep, 1], s=8, c=dev, cmap="jet")
        fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label="deviation (px)")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)
