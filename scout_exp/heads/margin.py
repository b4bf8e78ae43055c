"""Logit-margin score ``s(x) = z_(1)(x) - z_(2)(x)``, top-1 minus top-2 logit (docs/method.md, score S2;
the margin of Wang et al., "Rethinking calibration of deep neural networks: do not be afraid of
overconfidence", NeurIPS 2021, and of classic large-margin classifiers)."""

from __future__ import annotations

from torch import Tensor

from scout_exp.errors import UserError
from scout_exp.heads.base import ConfidenceHead, register_head


def logit_margin(logits: Tensor) -> Tensor:
    """(B, C) logits -> (B,) top-1 minus top-2 logit, >= 0. UserError for fewer than 2 classes."""
    if logits.shape[-1] < 2:
        raise UserError("the margin score needs at least 2 classes")
    top2 = logits.topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


@register_head
class MarginHead(ConfidenceHead):
    """How far the predicted class's logit leads the runner-up's; any classifier."""

    name = "margin"

    def score(self, out: Tensor) -> Tensor:
        return logit_margin(self.logits(out))
