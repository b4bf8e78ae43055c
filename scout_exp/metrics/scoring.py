"""Scoring a batch with the chosen metrics, and the explained score SCOUT's metrics perturb."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor

from scout_exp.metrics.base import Metric
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.perturbation import ScoreFn


def score_batch(metrics: Sequence[Metric], ctx: BatchContext) -> list[dict[str, object]]:
    """Per-image metric records (JSON-ready) for a batch; chance rows are keys ``chance_*``.

    ``metrics``: built metrics (:func:`scout_exp.metrics.build_metrics`). ``ctx`` holds the batch's inputs
    (:class:`scout_exp.metrics.context.BatchContext`, shapes there); a metric needing one that is
    missing raises ValueError. ``score_fn`` for SCOUT is :func:`margin_fn`. What several metrics
    compute alike (chance maps, PR curves, the images' scores) is computed once.
    """
    out: list[dict[str, object]] = [{} for _ in range(ctx.batch)]
    for metric in metrics:
        for record, update in zip(out, metric.score(ctx), strict=True):
            record.update(update)
    return out


def margin_fn(logits_fn: Callable[[Tensor], Tensor], class_a: Tensor, class_b: Tensor) -> ScoreFn:
    """SCOUT's explained score ``m = logit_a - logit_b`` as a :data:`ScoreFn`: row n of the input
    derives from image ``index[n]``, explained as ``class_a[index[n]]`` against ``class_b[index[n]]``."""

    def score(x: Tensor, index: Tensor) -> Tensor:
        logits = logits_fn(x)
        idx = index.to(logits.device)
        a, b = class_a.to(logits.device)[idx], class_b.to(logits.device)[idx]
        return logits.gather(1, a[:, None])[:, 0] - logits.gather(1, b[:, None])[:, 0]

    return score
