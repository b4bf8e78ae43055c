"""Training-free error-detection scores computed from a classifier's logits (higher = more likely correct).

Every score is a confidence: the higher, the more likely the prediction is right, so all are
evaluated the same way (AUROC of telling correct from wrong, AURC, FPR at 95% TPR). They are the
baselines a learned hardness predictor must beat (Jaeger et al., ICLR 2023, find the softmax
response hard to beat for failure detection); docs/hardness_posthoc.md lists the sources.
"""

from __future__ import annotations

from torch import Tensor

from scout_exp.heads.certainty import certainty_score
from scout_exp.heads.softmax import softmax_score

#: the baseline scores, in table order
BASELINES = ("softmax", "max_logit", "certainty", "prob_gap", "doctor")


def max_logit_score(logits: Tensor) -> Tensor:
    """Maximum logit ``max_y z_y(x)`` (B,): unbounded, unlike the softmax it keeps the logits' scale."""
    return logits.amax(dim=-1)


def prob_gap_score(logits: Tensor) -> Tensor:
    """Probability gap ``p_(1) - p_(2)`` (B,): the top-1 minus the top-2 softmax probability, in [0, 1].

    Also called best-versus-second-best (BvSB); not ``head=margin``, which is the gap of the logits.
    Raises ValueError for fewer than 2 classes.
    """
    if logits.shape[-1] < 2:
        raise ValueError("the probability gap needs at least 2 classes")
    top2 = logits.softmax(dim=-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def doctor_score(logits: Tensor) -> Tensor:
    """DOCTOR's soft-probability score as a confidence: ``sum_y p(y|x)^2`` (B,), in [1/C, 1].

    DOCTOR (Granese et al., NeurIPS 2021, the D_alpha detector) flags an error when
    ``1 - sum_y p(y|x)^2`` (the Gini impurity of the prediction) is large relative to
    ``sum_y p(y|x)^2``; its ratio ``(1 - g) / g`` is decreasing in ``g = sum_y p^2``, so ``g`` orders
    the samples the same way with the sign flipped to "higher = more likely correct".
    """
    return logits.softmax(dim=-1).square().sum(dim=-1)


def baseline_scores(logits: Tensor) -> dict[str, Tensor]:
    """Every baseline of :data:`BASELINES` for ``logits`` (B, C), each (B,) float32 on the logits' device."""
    logits = logits.detach().float()
    return {
        "softmax": softmax_score(logits),
        "max_logit": max_logit_score(logits),
        "certainty": certainty_score(logits),
        "prob_gap": prob_gap_score(logits),
        "doctor": doctor_score(logits),
    }


__all__ = ["BASELINES", "baseline_scores", "doctor_score", "max_logit_score", "prob_gap_score"]
