"""LayerCAM (Jiang et al., IEEE TIP 2021, Eq. 4-5)."""

from __future__ import annotations

import torch
from torch import Tensor

from scout_exp.attribution.base import BaseAttribution, register_attribution


@register_attribution("layercam")
class LayerCAM(BaseAttribution):
    """``a = ReLU(sum_k ReLU(dq/df_k) * f_k)``: element-wise positive-gradient weights (LayerCAM Eq. 4-5)."""

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Sum over channels of positive gradient times activation, then ReLU."""
        return torch.relu((torch.relu(gradients) * activations[:, None]).sum(dim=2))
