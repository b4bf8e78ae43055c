"""Grad-CAM++ (Chattopadhyay et al., WACV 2018, Eq. 19; docs/method.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import BaseAttribution, register_attribution


@register_attribution("gradcampp")
class GradCAMPlusPlus(BaseAttribution):
    """Grad-CAM++ with the closed-form alpha of docs/method.md section 1 (not the seed's collapsed weights).

    ``alpha_kij = g^2 / (2 g^2 + sum_ab f_kab g^3)`` (0 where the denominator is 0),
    ``w_k = sum_ij alpha_kij ReLU(g_kij)``, ``a = ReLU(sum_k w_k f_k)``. ``eps`` is added to the
    denominator; pytorch-grad-cam uses ``eps=1e-6`` (pass it to reproduce its values exactly).
    """

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, eps: float = 0.0) -> None:
        super().__init__(model, target_layer)
        self.eps = eps

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Alpha-weighted positive gradients as channel weights; ReLU of the weighted sum."""
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        f_sum = activations.sum(dim=(-2, -1), keepdim=True)[:, None]  # (B, 1, K, 1, 1)
        denom = 2 * g2 + f_sum * g3 + self.eps
        safe = torch.where(denom != 0, denom, torch.ones_like(denom))
        alpha = torch.where((denom != 0) & (gradients != 0), g2 / safe, torch.zeros_like(g2))
        weights = (alpha * torch.relu(gradients)).sum(dim=(-2, -1), keepdim=True)
        return torch.relu((weights * activations[:, None]).sum(dim=2))
