"""Verification metrics (ROC, TAR at FAR, EER) and the LFW pairs.txt reader.

The ROC is a sort-based one written here rather than ``torchmetrics.functional.roc``, because
torchmetrics passes scores outside [0, 1] (cosine similarities) through a sigmoid, which changes
the thresholds it returns. It equals ``sklearn.metrics.roc_curve(same, scores,
drop_intermediate=False)``: one point per distinct score plus the starting point (0, 0, +inf).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from scout_exp.errors import UserError

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]


def _as_numpy(x: ArrayLike, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(dtype).reshape(-1)


def verification_roc(scores: ArrayLike, same: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of pair scores (higher = more alike) against labels ``same``.

    Point k accepts the pairs with ``score >= thresholds[k]``; thresholds decrease from ``+inf``.
    """
    s = _as_numpy(scores, np.float64)
    y = _as_numpy(same, bool)
    if s.shape != y.shape:
        raise UserError(f"{s.size} scores but {y.size} labels; give one label per pair")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise UserError("verification needs both genuine and impostor pairs; the labels are all one class")
    if not np.isfinite(s).all():
        raise UserError("scores contain NaN or infinity; check the features")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_value = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[last_of_value]
    fps = last_of_value + 1 - tps
    fpr = np.r_[0.0, fps / (y.size - n_pos)]
    tpr = np.r_[0.0, tps / n_pos]
    thresholds = np.r_[np.inf, s[last_of_value]]
    return fpr, tpr, thresholds


def tar_at_far(
    scores: ArrayLike, same: ArrayLike, fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4)
) -> dict[float, float]:
    """TAR at each FAR: the largest true-accept rate over ROC points whose false-accept rate is at
    most ``far`` (no interpolation). The reference MATLAB takes the point whose FAR is *closest*
    to ``far`` instead, which can exceed it."""
    fpr, tpr, _ = verification_roc(scores, same)
    return {float(far): float(tpr[fpr <= far + 1e-12].max()) for far in fars}


def eer(scores: ArrayLike, same: ArrayLike) -> float:
    """Equal error rate: where FAR = FRR (= 1 - TAR), linearly interpolated between ROC points."""
    fpr, tpr, _ = verification_roc(scores, same)
    diff = fpr - (1.0 - tpr)
    i = int(np.argmax(diff >= 0))
    if i == 0:
        return float(fpr[0])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


class Pair(NamedTuple):
    """One LFW pair: image ``index`` (1-based) of person ``name``, for both sides."""

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Read an LFW ``pairs.txt``: optional header (``folds n`` or ``n``), then ``name i j`` lines
    (same person) and ``name1 i name2 j`` lines (different people), whitespace-separated."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"pairs file {p} does not exist; give the path of an LFW pairs.txt")
    lines = [ln.split() for ln in p.read_text().splitlines()]
    pairs: list[Pair] = []
    for lineno, tok in enumerate(lines, start=1):
        try:
            if not tok:
                continue
            if lineno == 1 and len(tok) <= 2 and all(t.isdigit() for t in tok):
                continue
            if len(tok) == 3:
                pairs.append(Pair(tok[0], int(tok[1]), tok[0], int(tok[2]), True))
            elif len(tok) == 4:
                pairs.append(Pair(tok[0], int(tok[1]), tok[2], int(tok[3]), False))
            else:
                raise ValueError
        except ValueError:
            raise UserError(f"{p}:{lineno}: expected 'name i j' or 'name1 i name2 j', got {' '.join(tok)!r}") from None
    if not pairs:
        raise UserError(f"{p} contains no pairs")
    return pairs


def lfw_image_path(root: str | os.PathLike[str], name: str, index: int, ext: str = "jpg") -> Path:
    """Path of LFW image ``index`` of ``name``: ``root/name/name_0001.jpg``."""
    return Path(root) / name / f"{name}_{index:04d}.{ext}"
