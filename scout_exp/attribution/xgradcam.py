"""XGrad-CAM (Fu et al., BMVC 2020, "Axiom-based Grad-CAM", Eq. 13-14)."""

from __future__ import annotations

import torch
from torch import Tensor

from scout_exp.attribution.base import BaseAttribution, register_attribution


@register_attribution("xgradcam")
class XGradCAM(BaseAttribution):
    """``w_k = sum_ij (f_kij / sum_ab f_kab) dq/df_kij``, ``a = sum_k w_k f_k`` (signed).

    As in pytorch-grad-cam's ``XGradCAM.get_cam_weights``; its ReLU comes later, in ``BaseCAM``,
    so the raw map here is signed. A channel whose activations sum to 0 gets weight 0.
    """

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Activation-normalised gradient-activation sums as channel weights; weighted sum."""
        f_sum = activations.sum(dim=(-2, -1), keepdim=True)
        safe = torch.where(f_sum != 0, f_sum, torch.ones_like(f_sum))
        f_norm = torch.where(f_sum != 0, activations / safe, torch.zeros_like(activations))
        weights = (gradients * f_norm[:, None]).sum(dim=(-2, -1), keepdim=True)
        return (weights * activations[:, None]).sum(dim=2)
