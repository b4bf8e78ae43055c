"""The confidence map a(s) of SCOUT (Eq. 8; docs/method.md): where the confidence score s(x) comes from.

The scores themselves are confidence heads (:mod:`scout_exp.heads`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def confidence_map(activations: Tensor, gradients: Tensor) -> Tensor:
    """``a(s) = sum_k f_k ReLU(ds/df_k)``: (B, K, h, w), (B, T, K, h, w) -> (B, T, h, w).

    The official SCOUT code keeps only the positive part of the score's gradient (docs/method.md section 1).
    """
    return (activations[:, None] * torch.relu(gradients)).sum(dim=2)
