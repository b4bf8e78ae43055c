"""``deletion``: RISE's deletion curve and AUC (Petsiuk et al., BMVC 2018); low is good.

The most important pixels first are replaced by ``deletion_baseline`` (the reference code's zeros)
over ``steps`` stages (``docs/metrics.md``; math: :mod:`scout_exp.metrics.perturbation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scout_exp.metrics.base import Curve, register_metric
from scout_exp.metrics.curves import RiseMetric, RiseOptions
from scout_exp.metrics.options import check_baseline
from scout_exp.metrics.perturbation import RISE_BASELINES


@register_metric
class Deletion(RiseMetric):
    """Per image ``deletion_curve`` (``steps + 1`` explained scores) and ``deletion_auc``, with chance rows."""

    name = "deletion"
    mode = "deletion"
    scores = {"deletion_auc": "lower"}
    figure = Curve("deletion: AUC {value:.2f}\n(random map {chance:.2f}; lower is better)")

    @dataclass(frozen=True)
    class Options(RiseOptions):
        """The RISE options and the baseline the deleted pixels take (``blur`` | ``zero`` | ``mean``)."""

        deletion_baseline: str = RISE_BASELINES["deletion"]

        def check(self) -> None:
            """UserError for an unknown baseline."""
            check_baseline("deletion", self.deletion_baseline)
