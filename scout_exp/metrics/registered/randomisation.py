"""``randomisation``: cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018); low is good.

The model's blocks are re-initialised from the top, cumulatively, and the maps recomputed after each
(``docs/metrics.md``; math: :mod:`scout_exp.metrics.randomisation`). No chance row: the references
are the original map (correlation 1) and an unrelated one (about 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from scout_exp.metrics.base import Metric, MetricOptions, register_metric, round_score
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.randomisation import cascading_randomisation


@register_metric
class Randomisation(Metric):
    """Per image and block ``randomisation_spearman_<block>`` (and of absolute values) between the
    original map and the map after randomising the blocks down to that one."""

    name = "randomisation"
    needs = frozenset({"model"})
    scores = {"randomisation_spearman_*": "lower", "randomisation_abs_spearman_*": "lower"}

    @dataclass(frozen=True)
    class Options(MetricOptions):
        """``seed``: the generator re-seeded before each block's re-initialisation."""

        seed: int = 0

    def score(self, ctx: BatchContext) -> list[dict[str, object]]:
        """One explanation per block (``explain_fn`` on the images with the randomised ``model``)."""
        o = self.options
        assert isinstance(o, Randomisation.Options)
        blocks, rho, rho_abs = cascading_randomisation(
            ctx.require("model"), ctx.require("explain_fn"), ctx.images, seed=o.seed
        )
        return [
            {
                **{f"randomisation_spearman_{n}": round_score(rho[i, j]) for j, n in enumerate(blocks)},
                **{f"randomisation_abs_spearman_{n}": round_score(rho_abs[i, j]) for j, n in enumerate(blocks)},
            }
            for i in range(ctx.batch)
        ]
