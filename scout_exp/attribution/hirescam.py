"""HiResCAM (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM", Eq. 3)."""

from __future__ import annotations

from torch import Tensor

from scout_exp.attribution.base import BaseAttribution, register_attribution


@register_attribution("hirescam")
class HiResCAM(BaseAttribution):
    """``a = sum_k dq/df_k * f_k`` (element-wise, signed), as pytorch-grad-cam's ``HiResCAM``.

    Same quantity as SCOUT's gradient x activation without the negative clamp.
    """

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Channel sum of gradient times activation, kept signed."""
        return (gradients * activations[:, None]).sum(dim=2)
