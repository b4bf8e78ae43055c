"""``road``: ROAD, most relevant first, with noisy linear imputation (Rong, Leemann et al., ICML 2022); low is good.

The most relevant ``road_fractions`` of the pixels are removed and imputed (``docs/metrics.md``;
math: :mod:`scout_exp.metrics.road`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from scout_exp.errors import UserError
from scout_exp.metrics.base import Curve, register_metric
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.curves import CurveMetric
from scout_exp.metrics.options import CurveOptions
from scout_exp.metrics.road import FRACTIONS, road_curves


@register_metric
class Road(CurveMetric):
    """Per image ``road_curve`` (the explained score after each removal fraction) and ``road_auc``
    (its mean over the fractions), with chance rows."""

    name = "road"
    scores = {"road_auc": "lower"}
    figure = Curve(
        "ROAD, most relevant first:\nmean {value:.2f} (random map {chance:.2f};\nlower is better)",
        x_option="road_fractions",
        style="o-",
    )

    @dataclass(frozen=True)
    class Options(CurveOptions):
        """The shares removed (``road_fractions``, each in (0, 1)) and the imputation noise's std."""

        road_fractions: Sequence[float] = FRACTIONS
        road_noise: float = 0.01

        def check(self) -> None:
            """UserError for fractions that are not a non-empty list of shares, or a negative noise."""
            fractions = self.road_fractions
            if isinstance(fractions, (str, int, float)) or not fractions or not all(0 < f < 1 for f in fractions):
                raise UserError(
                    "metric_options.road_fractions must be a non-empty list of shares in (0, 1), "
                    f"e.g. [0.1,0.5,0.9]; got {fractions!r}"
                )
            if self.road_noise < 0:
                raise UserError(
                    f"metric_options.road_noise is a standard deviation and must be >= 0, got {self.road_noise}"
                )

    def score(self, ctx: BatchContext) -> list[dict[str, object]]:
        """The ROAD curve of the maps and of each chance map (the imputation noise seeded ``seed``)."""
        o = self.options
        assert isinstance(o, Road.Options)
        score_fn, images = ctx.require("score_fn"), ctx.images
        curve = partial(
            road_curves, fractions=tuple(o.road_fractions), noise=o.road_noise, seed=o.seed, batch_size=o.batch_size
        )
        curves, auc = curve(score_fn, images, ctx.maps)
        chance = {k: curve(score_fn, images, m) for k, m in ctx.curve_chance_maps(o).items()}
        return self.curve_records(curves, auc, chance)
