"""``insertion``: RISE's insertion curve and AUC (Petsiuk et al., BMVC 2018); high is good.

From ``insertion_baseline`` (the reference code's blur), the most important pixels first are put back
over ``steps`` stages (``docs/metrics.md``; math: :mod:`scout_exp.metrics.perturbation`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scout_exp.metrics.base import Curve, register_metric
from scout_exp.metrics.curves import RiseMetric, RiseOptions
from scout_exp.metrics.options import check_baseline
from scout_exp.metrics.perturbation import RISE_BASELINES


@register_metric
class Insertion(RiseMetric):
    """Per image ``insertion_curve`` (``steps + 1`` explained scores) and ``insertion_auc``, with chance rows."""

    name = "insertion"
    mode = "insertion"
    scores = {"insertion_auc": "higher"}
    figure = Curve("insertion: AUC {value:.2f}\n(random map {chance:.2f}; higher is better)")

    @dataclass(frozen=True)
    class Options(RiseOptions):
        """The RISE options and the baseline the image starts from (``blur`` | ``zero`` | ``mean``)."""

        insertion_baseline: str = RISE_BASELINES["insertion"]

        def check(self) -> None:
            """UserError for an unknown baseline."""
            check_baseline("insertion", self.insertion_baseline)
