"""What the curve metrics (deletion, insertion, ROAD) share: their chance rows, curve records and the RISE protocol."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import Tensor

from scout_exp.metrics.base import Metric, round_score
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.options import CurveOptions, check_at_least_one
from scout_exp.metrics.perturbation import baseline_images, batch_scores, perturbation_curves


class CurveMetric(Metric):
    """A metric whose per-image result is a curve and its AUC, with a chance curve per ``curve_chance`` map."""

    chance = {"random": "random map", "centre": "centre prior"}

    def curve_records(
        self, curves: Tensor, auc: Tensor, chance: dict[str, tuple[Tensor, Tensor]]
    ) -> list[dict[str, object]]:
        """Per image: ``<name>_auc``, ``<name>_curve`` (rounded to 5 decimals), and for each chance map
        ``chance_<map>_<name>_auc`` and its curve ``<name>_<map>_curve`` (the curve figure's chance line).

        ``curves`` (B, S), ``auc`` (B,); ``chance``: map -> (curves, auc) of that chance map.
        """
        name, out = self.name, []
        for i in range(len(auc)):
            record: dict[str, object] = {f"{name}_auc": round_score(auc[i]), f"{name}_curve": _curve(curves[i])}
            record.update({f"chance_{k}_{name}_auc": round_score(v[1][i]) for k, v in chance.items()})
            record.update({f"{name}_{k}_curve": _curve(c[0][i]) for k, c in chance.items()})
            out.append(record)
        return out


def _curve(values: Tensor) -> list[float]:
    return [round(float(v), 5) for v in values]


@dataclass(frozen=True)
class RiseOptions(CurveOptions):
    """RISE curves: ``steps`` stages between the image and its baseline."""

    steps: int = 16

    def check(self) -> None:
        """UserError unless ``steps >= 1``."""
        check_at_least_one(self, "steps")


class RiseMetric(CurveMetric):
    """RISE's deletion or insertion curve (Petsiuk et al., BMVC 2018): pixels most important first.

    Subclasses set ``mode`` and an ``Options`` with the field ``<mode>_baseline``. Both ends of
    every curve (the image, its baseline) are scored once and shared by the map's and the chance
    maps' curves, and the image's score also by deletion and insertion run together.
    """

    mode: ClassVar[str]

    def score(self, ctx: BatchContext) -> list[dict[str, object]]:
        """The curve of the maps and of each chance map, from ``score_fn`` at ``steps + 1`` stages."""
        o = self.options
        assert isinstance(o, RiseOptions)
        score_fn, images = ctx.require("score_fn"), ctx.images
        base = baseline_images(images, getattr(o, f"{self.mode}_baseline"))
        ends = torch.stack([ctx.image_scores(o.batch_size), batch_scores(score_fn, base, o.batch_size)], 1)
        curve = partial(
            perturbation_curves, mode=self.mode, baseline=base, steps=o.steps, batch_size=o.batch_size, ends=ends
        )
        curves, auc = curve(score_fn, images, ctx.maps)
        chance = {k: curve(score_fn, images, m) for k, m in ctx.curve_chance_maps(o).items()}
        return self.curve_records(curves, auc, chance)
