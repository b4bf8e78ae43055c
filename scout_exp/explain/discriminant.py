"""Discriminant maps (SCOUT Eq. 6-7) and their ablation variants."""

from __future__ import annotations

import torch
from torch import Tensor

VARIANTS = ("a", "a_abar", "a_abar_as")


def complement(a: Tensor) -> Tensor:
    """``abar = max_ij(a) - a`` per map over the last two dims (Eq. 7): high where ``a`` is low."""
    return a.amax(dim=(-2, -1), keepdim=True) - a


def discriminant_map(
    a_class: Tensor, a_counter: Tensor, a_conf: Tensor | None = None, variant: str = "a_abar_as"
) -> Tensor:
    """``d = a(h_y*) * abar(h_yc) * a(s)`` (Eq. 6) or an ablation variant ``"a"``, ``"a_abar"``.

    The product only ranks pixels correctly when its factors are non-negative, so the class and
    confidence maps are clamped at 0 first (a no-op for Grad-CAM, Grad-CAM++, LayerCAM, the
    clamped gradient x activation and the confidence map; it drops the negative evidence of
    signed maps). The complement is non-negative by construction.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown discriminant variant {variant!r}; choose one of {VARIANTS}")
    d = torch.relu(a_class)
    if variant == "a":
        return d
    d = d * complement(a_counter)
    if variant == "a_abar":
        return d
    if a_conf is None:
        raise ValueError("variant 'a_abar_as' needs the confidence map a_conf")
    return d * torch.relu(a_conf)
