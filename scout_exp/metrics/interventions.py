"""Intervention ground truth: what the model really uses (FunnyBirds-style; see ``docs/metrics.md``).

For an image ``x`` of identity ``a`` explained against ``b``, the causal effect of a part ``p`` on
the margin ``m = logit_a - logit_b`` is ``delta_p = m(x) - m(x with p switched to b's variant)``;
FaceParts renders the switched image with the same pose, light and clutter. Parts that ``a`` and
``b`` share have ``delta_p = 0`` exactly (switching them changes no pixel), so they need no
forward pass and take part in the rank correlation with effect 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from scout_exp.metrics.perturbation import ScoreFn


@torch.no_grad()
def part_effects(
    score_fn: ScoreFn,
    images: Tensor,
    switched: Sequence[Mapping[int, Tensor]],
    num_parts: int,
    batch_size: int = 64,
) -> Tensor:
    """(B, P) effects ``delta_p = score(x) - score(x with part p switched)``; 0 for unswitched parts.

    ``switched[i]`` maps part indices to the (C, H, W) switched versions of ``images[i]``.
    """
    jobs = [(i, p, img) for i, row in enumerate(switched) for p, img in row.items()]
    batch = torch.cat([images] + [torch.stack([img for _, _, img in jobs]).to(images.device)] if jobs else [images])
    index = torch.tensor(list(range(len(images))) + [i for i, _, _ in jobs], device=images.device)
    scores = torch.cat(
        [
            score_fn(batch[lo : lo + batch_size], index[lo : lo + batch_size]).reshape(-1)
            for lo in range(0, len(batch), batch_size)
        ]
    )
    base, cf = scores[: len(images)].cpu().double(), scores[len(images) :].cpu().double()
    effects = torch.zeros(len(images), num_parts, dtype=torch.float64)
    for n, (i, p, _) in enumerate(jobs):
        effects[i, p] = base[i] - cf[n]
    return effects


def intervention_scores(
    mass: Tensor, effects: Tensor, visible: Tensor, inside: Tensor, switched: Tensor
) -> dict[str, Tensor]:
    """Per-image scores of maps against intervention effects, all (B,) float64 (NaN when undefined).

    - ``intervention_spearman``: Spearman correlation over the visible parts between attribution
      mass (:func:`scout_exp.metrics.parts.part_mass`: sum of the map over the part's pixels, as a
      share of the map's total) and ``delta_p`` (NaN when either is constant).
    - ``top_part_hit``: 1 when the segment holds (``inside``, SCOUT's coverage rule) the part with the
      largest ``delta_p``.
    Inputs are (B, P): ``mass``, ``effects``, and bool ``visible``, ``inside``, ``switched``.
    """
    b = mass.shape[0]
    rho = torch.full((b,), math.nan, dtype=torch.float64)
    hit = torch.full((b,), math.nan, dtype=torch.float64)
    for i in range(b):
        vis = visible[i].numpy()
        m, d = mass[i].numpy()[vis], effects[i].numpy()[vis]
        if len(m) >= 2 and np.ptp(m) > 0 and np.ptp(d) > 0:
            rho[i] = float(spearmanr(m, d).statistic)
        if bool(switched[i].any()):
            top = int(torch.where(switched[i], effects[i], torch.tensor(-math.inf, dtype=torch.float64)).argmax())
            hit[i] = float(inside[i, top])
    return {"intervention_spearman": rho, "top_part_hit": hit}


def single_part_share(segments: Tensor, part_maps: Tensor, switched: Tensor) -> Tensor:
    """(B,) share of the segment's pixels on the one switched part (k = 1 look-alikes; else NaN)."""
    b = segments.shape[0]
    out = torch.full((b,), math.nan, dtype=torch.float64)
    for i in range(b):
        parts = torch.nonzero(switched[i]).flatten()
        area = int(segments[i].sum())
        if len(parts) == 1 and area > 0:
            out[i] = float((segments[i] & (part_maps[i] == parts[0])).sum()) / area
    return out
