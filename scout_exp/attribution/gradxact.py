"""Gradient x activation, the SCOUT paper's own attribution (Wang & Vasconcelos 2020, Eq. 10)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import BaseAttribution, register_attribution

#: The value the official SCOUT code writes over negative class-map entries.
NEGATIVE_FLOOR = 1e-7


@register_attribution("gradxact")
class GradXAct(BaseAttribution):
    """``a_ij = sum_k (dq/df_kij) f_kij`` (SCOUT Eq. 10); negatives set to 1e-7 like the official code.

    With ``clamp_negative=False`` the signed map is returned; ``mode=verify`` asks for it (its
    different evidence is the negative part).
    """

    verification_options = {"clamp_negative": False}

    def __init__(
        self,
        model: nn.Module,
        target_layer: str | nn.Module | None = None,
        clamp_negative: bool = True,
    ) -> None:
        super().__init__(model, target_layer)
        self.clamp_negative = clamp_negative

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Channel sum of gradient times activation, optionally with negatives floored at 1e-7."""
        maps = (gradients * activations[:, None]).sum(dim=2)
        if self.clamp_negative:
            maps = torch.where(maps < 0, torch.full_like(maps, NEGATIVE_FLOOR), maps)
        return maps
