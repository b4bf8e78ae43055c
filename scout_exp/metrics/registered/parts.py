"""``parts``: SCOUT's part precision and recall of the top-``area_fraction`` segment and its PR curve.

Wang & Vasconcelos, "SCOUT: Self-aware Discriminant Counterfactual Explanations", CVPR 2020; the
protocol and chance rows are in ``docs/metrics.md`` (math: :mod:`scout_exp.metrics.parts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scout_exp.metrics.base import Metric, column_records, register_metric, round_scores
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.options import CentreOptions, PartOptions
from scout_exp.metrics.parts import segment_precision_recall, top_pixels, whole_face_precision_recall


@register_metric
class Parts(Metric):
    """Per image ``precision``, ``recall``, ``parts_in_segment`` and the PR curve (``pr_precision``,
    ``pr_recall`` over ``fractions``), with the random map's, the whole face's and the centre prior's rows."""

    name = "parts"
    needs = frozenset({"parts"})
    scores = {"precision": "higher", "recall": "higher"}
    chance = {"random": "random map", "face": "whole face", "centre": "centre prior"}

    @dataclass(frozen=True)
    class Options(PartOptions, CentreOptions):
        """The segment protocol, the random maps and the centre prior."""

    def score(self, ctx: BatchContext) -> list[dict[str, object]]:
        """The records from the shared PR curves and random segments (:class:`BatchContext`)."""
        o = self.options
        assert isinstance(o, Parts.Options)
        part_maps, disc = ctx.require("part_maps"), ctx.require("discriminative")
        (h, w), b = ctx.size, ctx.batch
        prec, rec, inside = ctx.part_curves(o.area_fraction, o.fractions, o.min_coverage)
        k = ctx.segment_pixels(o.area_fraction)
        centre = top_pixels(ctx.centre_prior(o.centre, o.centre_sigma)[:1], k).expand(b, h, w)  # same prior for all
        pc, rc, _ = segment_precision_recall(centre, part_maps, disc, o.min_coverage)
        _, rand_prec, rand_rec, _ = ctx.random_segments(o.chance_draws, o.seed, o.area_fraction, o.min_coverage)
        fp, fr = whole_face_precision_recall(part_maps, disc)
        records = column_records(
            {
                "precision": prec[:, 0],
                "recall": rec[:, 0],
                "chance_random_precision": rand_prec.nanmean(0),
                "chance_random_recall": rand_rec.nanmean(0),
                "chance_face_precision": fp,
                "chance_face_recall": fr,
                "chance_centre_precision": pc,
                "chance_centre_recall": rc,
            },
            b,
        )
        curve_p, curve_r, held = prec[:, 1:].tolist(), rec[:, 1:].tolist(), inside[:, 0].tolist()
        for i, record in enumerate(records):
            record.update(
                parts_in_segment=[name for name, x in zip(ctx.part_names, held[i]) if x],
                pr_precision=round_scores(curve_p[i]),
                pr_recall=round_scores(curve_r[i]),
            )
        return records
