"""Certainty score: one minus the normalised entropy of the softmax (SCOUT Eq. 12; docs/method.md)."""

from __future__ import annotations

import math

from torch import Tensor

from scout_exp.errors import UserError
from scout_exp.heads.base import ConfidenceHead, register_head


def certainty_score(logits: Tensor) -> Tensor:
    """``s^c(x) = 1 + (1/log C) sum_y h_y log h_y`` (Eq. 12): (B, C) logits -> (B,) in [0, 1].

    Raises UserError for fewer than 2 classes (the entropy is not normalisable).
    """
    n_classes = logits.shape[-1]
    if n_classes < 2:
        raise UserError("the certainty score needs at least 2 classes")
    log_p = logits.log_softmax(dim=-1)
    return 1 + (log_p.exp() * log_p).sum(dim=-1) / math.log(n_classes)


@register_head
class CertaintyHead(ConfidenceHead):
    """1 - normalised entropy of the class posterior; any classifier."""

    name = "certainty"

    def score(self, out: Tensor) -> Tensor:
        return certainty_score(self.logits(out))
