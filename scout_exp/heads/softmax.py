"""Softmax score ``s^s(x) = max_y h_y(x)`` (SCOUT Eq. 11; docs/method.md)."""

from __future__ import annotations

from torch import Tensor

from scout_exp.heads.base import ConfidenceHead, register_head


def softmax_score(logits: Tensor) -> Tensor:
    """Softmax score ``s^s(x) = max_y h_y(x)`` (Eq. 11): (B, C) logits -> (B,) in (1/C, 1]."""
    return logits.softmax(dim=-1).amax(dim=-1)


@register_head
class SoftmaxHead(ConfidenceHead):
    """The largest class probability; any classifier."""

    name = "softmax"

    def score(self, out: Tensor) -> Tensor:
        return softmax_score(self.logits(out))
