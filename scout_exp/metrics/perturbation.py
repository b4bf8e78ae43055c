"""Deletion and insertion curves (Petsiuk et al., RISE, BMVC 2018), batched in torch.

Pixels are ordered by the map (resized bilinearly to the image; most important first, stable
sort). Deletion starts from the image and replaces the top ``t/steps`` of the pixels (all
channels) by the baseline; insertion starts from the baseline and puts the top pixels back. The
curve holds the explained score after each of the ``steps + 1`` stages (0%, ..., 100%) and the AUC
is its trapezoidal mean over the area axis [0, 1]: low is good for deletion, high for insertion.

Why not quantus: ``quantus.PixelFlipping`` (deletion) perturbs a NumPy copy step by step and runs
one model call per step and batch; here all ``B * (steps + 1)`` images are built by one
``torch.where`` from a rank map and scored in chunks of ``batch_size``. ``tests/test_metrics_perturbation.py``
checks that the curves agree with quantus on the same inputs; ``python -m scout_exp.bench metrics``
prints the speed-up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from scout_exp.errors import UserError
from scout_exp.metrics.parts import pixel_ranks

MODES = ("deletion", "insertion")
BASELINES = ("blur", "zero", "mean")
#: ``score_fn(x, index)``: (N, C, H, W) images, (N,) index of the explained image each row derives
#: from -> (N,) scores (the index selects the class pair, or the reference of a verification pair).
ScoreFn = Callable[[Tensor, Tensor], Tensor]


def blur(images: Tensor, kernel: int = 11, sigma: float = 5.0) -> Tensor:
    """Gaussian blur (RISE reference: kernel 11, sigma 5), reflect-padded, per channel."""
    r = kernel // 2
    t = torch.arange(kernel, dtype=images.dtype, device=images.device) - r
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)


def baseline_images(images: Tensor, baseline: str | Tensor) -> Tensor:
    """(B, C, H, W) baseline: ``blur`` (RISE), ``zero``, ``mean`` (per image and channel) or a tensor."""
    if isinstance(baseline, Tensor):
        return baseline.to(images).expand_as(images)
    if baseline == "blur":
        return blur(images)
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    raise UserError(f"unknown perturbation baseline {baseline!r}; choose one of: {', '.join(BASELINES)}")


@torch.no_grad()
def perturbation_curves(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    *,
    mode: str = "deletion",
    baseline: str | Tensor = "blur",
    steps: int = 56,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Deletion or insertion curves (B, steps + 1) and their AUC (B,) for ``score_fn``.

    ``score_fn(x, index)`` maps an (N, C, H, W) batch and the (N,) indices of the images the rows
    derive from to (N,) scores (for SCOUT the margin ``logit_a - logit_b`` of that image's pair,
    :func:`scout_exp.metrics.margin_fn`; for verification a cosine similarity to its reference). ``maps`` (B, h, w) at any
    resolution. Stage ``t`` perturbs the ``round(t * H * W / steps)`` most important pixels.
    Errors: UserError for an unknown mode or baseline, or steps < 1.
    """
    if mode not in MODES:
        raise UserError(f"unknown perturbation mode {mode!r}; choose one of: {', '.join(MODES)}")
    if steps < 1 or batch_size < 1:
        raise UserError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    b, _, h, w = images.shape
    base = baseline_images(images, baseline)
    ranks = pixel_ranks(maps.cpu(), (h, w)).to(images.device)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * (h * w) / steps).long().to(images.device)
    start, end = (images, base) if mode == "deletion" else (base, images)
    scores = torch.empty(b * (steps + 1), device=images.device)
    flat = [(i, t) for i in range(b) for t in range(steps + 1)]
    for lo in range(0, len(flat), batch_size):
        rows = torch.tensor([i for i, _ in flat[lo : lo + batch_size]], device=images.device)
        stage = torch.tensor([t for _, t in flat[lo : lo + batch_size]], device=images.device)
        changed = (ranks[rows] < counts[stage][:, None, None])[:, None]
        scores[lo : lo + len(rows)] = score_fn(torch.where(changed, end[rows], start[rows]), rows).reshape(-1)
    curves = scores.reshape(b, steps + 1)
    auc = (curves[:, 1:] + curves[:, :-1]).sum(1) / (2 * steps)
    return curves.cpu(), auc.cpu()
