"""``interventions``: the effect on the margin of switching each differing part, against the map's mass on it.

After FunnyBirds (Hesse et al., ICCV 2023); definitions in ``docs/metrics.md`` (math:
:mod:`scout_exp.metrics.interventions`). Needs counterfactual renders of the part-annotated data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scout_exp.metrics.base import Metric, register_metric, round_score
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.interventions import intervention_scores, part_effects, single_part_share
from scout_exp.metrics.options import BatchOptions, PartOptions
from scout_exp.metrics.parts import part_mass, part_pixels, resize_maps, top_pixels


@register_metric
class Interventions(Metric):
    """Per image ``part_effects`` and ``part_mass`` (part name -> value), ``intervention_spearman``,
    ``top_part_hit`` and ``single_part_share``, each with the random map's row."""

    name = "interventions"
    needs = frozenset({"parts", "interventions"})
    scores = {"intervention_spearman": "higher", "top_part_hit": "higher", "single_part_share": "higher"}
    chance = {"random": "random map"}
    figure = "part_effects"
    fields = ("part_effects", "part_mass")

    @dataclass(frozen=True)
    class Options(PartOptions, BatchOptions):
        """The segment protocol (its PR curve and random segments shared with ``parts``) and the batch size."""

    def score(self, ctx: BatchContext) -> list[dict[str, object]]:
        """One forward pass per switched part; the segment and the chance maps come from the context."""
        o = self.options
        assert isinstance(o, Interventions.Options)
        images, maps, names = ctx.images, ctx.maps, ctx.part_names
        part_maps, disc, switched = ctx.require("part_maps"), ctx.require("discriminative"), ctx.require("switched")
        (h, w), b, p = ctx.size, ctx.batch, disc.shape[1]
        _, _, inside = ctx.part_curves(o.area_fraction, o.fractions, o.min_coverage)
        k = ctx.segment_pixels(o.area_fraction)
        rand_segments, _, _, rand_inside = ctx.random_segments(o.chance_draws, o.seed, o.area_fraction, o.min_coverage)
        effects = part_effects(ctx.require("score_fn"), images, switched, p, o.batch_size)
        sw = torch.zeros(b, p, dtype=torch.bool)
        for i, row in enumerate(switched):
            sw[i, list(row)] = True
        visible = part_pixels(part_maps, p) > 0
        scores = intervention_scores(part_mass(maps, part_maps, p), effects, visible, inside[:, 0], sw)
        share = single_part_share(top_pixels(resize_maps(maps, (h, w)), k), part_maps, sw)
        rand_scores = [
            intervention_scores(part_mass(c, part_maps, p), effects, visible, r, sw)
            for c, r in zip(ctx.chance_maps(o.chance_draws, o.seed), rand_inside)
        ]
        rand_share = torch.stack([single_part_share(s, part_maps, sw) for s in rand_segments])
        return [
            {
                "part_effects": {
                    names[j]: round(float(effects[i, j]), 6) for j in torch.nonzero(sw[i]).flatten().tolist()
                },
                "part_mass": {
                    names[j]: round(float(v), 6)
                    for j, v in enumerate(part_mass(maps[i : i + 1], part_maps[i : i + 1], p)[0])
                    if visible[i, j]
                },
                "intervention_spearman": round_score(scores["intervention_spearman"][i]),
                "top_part_hit": round_score(scores["top_part_hit"][i]),
                "single_part_share": round_score(share[i]),
                "chance_random_intervention_spearman": round_score(
                    torch.stack([r["intervention_spearman"][i] for r in rand_scores]).nanmean()
                ),
                "chance_random_top_part_hit": round_score(
                    torch.stack([r["top_part_hit"][i] for r in rand_scores]).nanmean()
                ),
                "chance_random_single_part_share": round_score(rand_share[:, i].nanmean()),
            }
            for i in range(b)
        ]
