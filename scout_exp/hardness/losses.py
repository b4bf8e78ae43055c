"""Losses of the joint classifier / hardness-predictor training (docs/method.md section 2, ECCV 2018).

All losses are averaged over the batch: the paper's sums divided by the batch size B, so that a
learning rate does not depend on the batch size (the minimisers are the same).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scout_exp.errors import UserError

CLASSIFIER_LOSSES = ("weighted", "unweighted")
PREDICTOR_LOSSES = ("bce", "linear")


def true_class_probability(logits: Tensor, labels: Tensor) -> Tensor:
    """``p_i(y_i)``: the softmax probability of each sample's true class, shape (B,)."""
    return logits.float().softmax(dim=1).gather(1, labels[:, None])[:, 0]


def weighted_cross_entropy(logits: Tensor, labels: Tensor, hardness: Tensor) -> Tensor:
    """Hardness-weighted cross-entropy ``L_F = -(1/B) sum_i s_i log p_i(y_i)`` (docs/method.md section 2).

    ``hardness`` (s^hp, (B,)) only weights the samples: it is detached, so this loss never
    updates the predictor.
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return (hardness.detach().float() * ce).mean()


def bce_hardness_loss(hardness_logit: Tensor, p_true: Tensor) -> Tensor:
    """``L_S = -(1/B) sum_i [p_i log(1 - s_i) + (1 - p_i) log s_i]`` with ``s = sigmoid(z)`` (docs/method.md section 2).

    Takes the predictor's logit ``z`` (log-sigmoid is exact where ``s`` rounds to 0 or 1); the
    classifier's ``p_i(y_i)`` is detached, so this loss never updates the classifier.
    """
    return F.binary_cross_entropy_with_logits(hardness_logit.float(), 1 - p_true.detach().float())


def linear_hardness_loss(hardness_logit: Tensor, p_true: Tensor) -> Tensor:
    """The SCOUT code's variant ``mean(1 - (1 - p) s - (1 - s) p)`` with ``s = sigmoid(z)``, ``p`` detached.

    It is linear in ``s``: ``1 - p - s (1 - 2p)``, minimised by s -> 1 when p < 1/2 and s -> 0 when p > 1/2.
    """
    s = torch.sigmoid(hardness_logit.float())
    p = p_true.detach().float()
    return (1 - (1 - p) * s - (1 - s) * p).mean()


def classifier_loss(kind: str, logits: Tensor, labels: Tensor, hardness: Tensor) -> Tensor:
    """The classifier's loss: ``weighted`` (ECCV hardness-weighted CE) or ``unweighted`` (plain CE)."""
    if kind == "weighted":
        return weighted_cross_entropy(logits, labels, hardness)
    if kind == "unweighted":
        return F.cross_entropy(logits.float(), labels)
    raise UserError(f"unknown classifier_loss {kind!r}; choose one of: {', '.join(CLASSIFIER_LOSSES)}")


def predictor_loss(kind: str, hardness_logit: Tensor, p_true: Tensor) -> Tensor:
    """The hardness predictor's loss: ``bce`` (ECCV) or ``linear`` (SCOUT code)."""
    if kind == "bce":
        return bce_hardness_loss(hardness_logit, p_true)
    if kind == "linear":
        return linear_hardness_loss(hardness_logit, p_true)
    raise UserError(f"unknown predictor_loss {kind!r}; choose one of: {', '.join(PREDICTOR_LOSSES)}")
