"""Self-awareness confidence scores and the confidence map (SCOUT Eq. 11-13, METHOD section 1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def softmax_score(logits: Tensor) -> Tensor:
    """Softmax score ``s^s(x) = max_y h_y(x)`` (Eq. 11), shape (B,)."""
    return logits.softmax(dim=-1).amax(dim=-1)


def certainty_score(logits: Tensor) -> Tensor:
    """Certainty score ``s^c(x) = 1 + (1/log C) sum_y h_y log h_y`` (Eq. 12), 1 minus normalised entropy."""
    n_classes = logits.shape[-1]
    if n_classes < 2:
        raise ValueError("the certainty score needs at least 2 classes")
    log_p = logits.log_softmax(dim=-1)
    return 1 + (log_p.exp() * log_p).sum(dim=-1) / math.log(n_classes)


def easiness_score(hardness: Tensor) -> Tensor:
    """Easiness score ``s^e(x) = 1 - s^hp(x)`` (Eq. 13) from the hardness predictor's output."""
    return 1 - hardness.reshape(hardness.shape[0])


def confidence_map(activations: Tensor, gradients: Tensor) -> Tensor:
    """``a(s) = sum_k f_k ReLU(ds/df_k)``: (B, K, h, w), (B, T, K, h, w) -> (B, T, h, w).

    The official SCOUT code keeps only the positive part of the score's gradient (METHOD section 1).
    """
    return (activations[:, None] * torch.relu(gradients)).sum(dim=2)
