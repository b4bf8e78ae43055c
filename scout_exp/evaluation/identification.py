"""Closed-set identification: cumulative match characteristic (CMC)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from scout_exp.errors import UserError

#: labels of the probes or of the gallery entries: a sequence, an array or a tensor
Labels = Sequence[Any] | np.ndarray | torch.Tensor


def _np(x: Labels) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def match_ranks(similarity: np.ndarray | torch.Tensor, probe_labels: Labels, gallery_labels: Labels) -> np.ndarray:
    """Rank (1-based) of each probe's first correct gallery entry; 0 for probes with no mate.

    rank = 1 + the number of gallery entries of *other* subjects whose similarity is at least the
    best similarity to the probe's subject: ties count against the probe (pessimistic).
    """
    sim = _np(similarity).astype(np.float64)
    p_lab, g_lab = _np(probe_labels).reshape(-1), _np(gallery_labels).reshape(-1)
    if sim.shape != (p_lab.size, g_lab.size):
        raise UserError(f"similarity is {sim.shape} but there are {p_lab.size} probes and {g_lab.size} gallery entries")
    genuine = p_lab[:, None] == g_lab[None, :]
    mated = genuine.any(axis=1)
    best = np.where(genuine, sim, -np.inf).max(axis=1)
    impostors_above = (np.where(genuine, -np.inf, sim) >= best[:, None]).sum(axis=1)
    return np.where(mated, 1 + impostors_above, 0)


def cmc(
    similarity: np.ndarray | torch.Tensor,
    probe_labels: Labels,
    gallery_labels: Labels,
    ranks: Sequence[int] = (1, 5),
) -> dict[int, float]:
    """Identification rate at each rank: the fraction of mated probes whose correct subject is
    within the top ``rank`` gallery entries. Probes whose subject is not in the gallery are left out
    (closed-set protocol, as the reference IJB-A/IJB-C scripts do)."""
    r = match_ranks(similarity, probe_labels, gallery_labels)
    mated = r[r > 0]
    if mated.size == 0:
        raise UserError("no probe subject appears in the gallery; check the probe and gallery lists")
    return {int(k): float((mated <= k).mean()) for k in ranks}
