"""Max-logit score ``s(x) = max_y z_y(x)`` (Hendrycks et al., "Scaling out-of-distribution detection
for real-world settings", ICML 2022, Sec. 4; docs/method.md, score S1)."""

from __future__ import annotations

from torch import Tensor

from scout_exp.heads.base import ConfidenceHead, register_head


@register_head
class MaxLogitHead(ConfidenceHead):
    """The largest class logit (unnormalised, in logit units); any classifier."""

    name = "max_logit"

    def score(self, out: Tensor) -> Tensor:
        """(B, C) logits -> (B,) the row maxima."""
        return self.logits(out).amax(dim=-1)
