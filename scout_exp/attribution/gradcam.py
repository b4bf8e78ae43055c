"""Grad-CAM (Selvaraju et al., ICCV 2017; docs/method.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from scout_exp.attribution.base import BaseAttribution, register_attribution


@register_attribution("gradcam")
class GradCAM(BaseAttribution):
    """``w_k = mean_ij dq/df_kij``, ``a = ReLU(sum_k w_k f_k)`` (docs/method.md section 1, Grad-CAM)."""

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Channel weights = spatial mean of the gradient; ReLU of the weighted activation sum."""
        weights = gradients.mean(dim=(-2, -1), keepdim=True)  # (B, T, K, 1, 1)
        return torch.relu((weights * activations[:, None]).sum(dim=2))
