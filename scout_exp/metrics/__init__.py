"""Explanation-quality metrics: pure functions on tensors (no Hydra, no Lightning).

One entry point for a task: :func:`score_batch` scores a batch of maps with the chosen metrics
and their chance rows; :func:`summarise` turns the per-image records into means with 95%
bootstrap confidence intervals. The definitions and their sources are in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.metrics.chance import centre_prior, random_maps
from scout_exp.metrics.interventions import intervention_scores, part_effects, single_part_share
from scout_exp.metrics.parts import (
    area_pixels,
    part_mass,
    part_pixels,
    pr_curves,
    resize_maps,
    segment_precision_recall,
    top_pixels,
    whole_face_precision_recall,
)
from scout_exp.metrics.perturbation import (
    BASELINES,
    RISE_BASELINES,
    ScoreFn,
    baseline_images,
    batch_scores,
    perturbation_curves,
)
from scout_exp.metrics.randomisation import cascading_randomisation
from scout_exp.metrics.road import FRACTIONS as ROAD_FRACTIONS
from scout_exp.metrics.road import road_curves
from scout_exp.metrics.stats import mean_ci, summarise

__all__ = [
    "METRICS",
    "PART_METRICS",
    "MetricSettings",
    "check_metrics",
    "margin_fn",
    "mean_ci",
    "perturbation_curves",
    "score_batch",
    "summarise",
]

#: parts: SCOUT part precision/recall and PR curve; interventions: part effects on the margin;
#: deletion / insertion: RISE curves and AUC; road: ROAD's most-relevant-first curve (noisy linear
#: imputation); randomisation: cascading parameter randomisation.
METRICS = ("parts", "interventions", "deletion", "insertion", "road", "randomisation")
PART_METRICS = ("parts", "interventions")  # need part annotations (FaceParts)
#: chance maps the curve metrics (deletion, insertion, road) can be run with; each costs a curve
CURVE_CHANCE = ("random", "centre")


def check_metrics(metrics: Sequence[str], has_parts: bool, data: str) -> list[str]:
    """The validated metric list; UserError naming the bad metric (with the choices) or the data."""
    out = []
    for m in metrics:
        if m not in METRICS:
            raise UserError(f"unknown metric {m!r}; choose from: {', '.join(METRICS)}")
        if m in PART_METRICS and not has_parts:
            raise UserError(
                f"metric {m!r} needs part annotations and {data} has none; "
                f"use FaceParts (split=...) or metrics without parts ({', '.join(x for x in METRICS if x not in PART_METRICS)})"
            )
        out.append(m)
    return list(dict.fromkeys(out))


@dataclass
class MetricSettings:
    """Protocol parameters (defaults: SCOUT's area fractions, the RISE reference code's baselines)."""

    part_names: Sequence[str] = ()
    area_fraction: float = 0.1
    fractions: Sequence[float] = field(
        default_factory=lambda: (0.005,) + tuple(round(0.01 * i, 2) for i in range(1, 100))
    )
    min_coverage: float = 0.5
    chance_draws: int = 4
    centre: tuple[float, float] = (0.5, 0.55)
    centre_sigma: float = 0.25
    steps: int = 16
    deletion_baseline: str = RISE_BASELINES["deletion"]
    insertion_baseline: str = RISE_BASELINES["insertion"]
    road_fractions: Sequence[float] = ROAD_FRACTIONS
    road_noise: float = 0.01
    curve_chance: Sequence[str] = ("random",)
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        """UserError (one line) for a protocol parameter no metric can run with."""
        for mode in ("deletion", "insertion"):
            value = getattr(self, f"{mode}_baseline")
            if value not in BASELINES:
                raise UserError(f"unknown {mode}_baseline {value!r}; choose one of: {', '.join(BASELINES)}")
        for key in ("steps", "batch_size", "chance_draws"):
            if getattr(self, key) < 1:
                raise UserError(f"metric_options.{key} must be >= 1, got {getattr(self, key)}")
        fractions = self.road_fractions
        if isinstance(fractions, (str, int, float)) or not fractions or not all(0 < f < 1 for f in fractions):
            raise UserError(
                f"metric_options.road_fractions must be a non-empty list of shares in (0, 1), e.g. [0.1,0.5,0.9]; got {fractions!r}"
            )
        curve_chance = self.curve_chance
        if isinstance(curve_chance, str) or not set(curve_chance) <= set(CURVE_CHANCE):
            raise UserError(
                f"metric_options.curve_chance is a list of chance maps from: {', '.join(CURVE_CHANCE)}; got {curve_chance!r}"
            )
        if self.road_noise < 0:
            raise UserError(
                f"metric_options.road_noise is a standard deviation and must be >= 0, got {self.road_noise}"
            )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **fixed: Any) -> MetricSettings:
        """Settings from the ``metric_options`` of a config plus ``fixed`` fields; UserError naming an
        unknown option with the valid ones."""
        known = {f.name for f in fields(cls)} - set(fixed)
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"unknown metric_options {', '.join(unknown)}; choose from: {', '.join(sorted(known))}")
        return cls(**fixed, **options)


def score_batch(
    metrics: Sequence[str],
    *,
    images: Tensor,
    maps: Tensor,
    settings: MetricSettings,
    score_fn: ScoreFn | None = None,
    part_maps: Tensor | None = None,
    discriminative: Tensor | None = None,
    switched: Sequence[dict[int, Tensor]] | None = None,
    model: nn.Module | None = None,
    explain_fn: Callable[[Tensor], Tensor] | None = None,
) -> list[dict[str, object]]:
    """Per-image metric records (JSON-ready) for a batch; chance rows are keys ``chance_*``.

    Shapes: ``images`` (B, C, H, W) as the model sees them; ``maps`` (B, h, w) raw at the target
    layer's resolution; ``part_maps`` (B, H, W) part indices (-1 elsewhere); ``discriminative``
    (B, P) bool; ``switched[i]`` part index -> switched (C, H, W) image of ``images[i]``.
    ``score_fn(x, index)``: (N, C, H, W) perturbed images and (N,) the image each row derives from
    -> (N,) explained scores (SCOUT: :func:`margin_fn`). ``explain_fn`` recomputes ``maps`` from
    ``images`` with ``model`` (randomisation).
    """
    b, _, h, w = images.shape
    out: list[dict[str, object]] = [{} for _ in range(b)]
    gen = torch.Generator().manual_seed(settings.seed)
    maps = maps.detach().float().cpu()
    chance = random_maps(b, tuple(maps.shape[-2:]), settings.chance_draws, gen)
    centre_map = centre_prior(b, (h, w), settings.centre, settings.centre_sigma)
    names = list(settings.part_names)
    if "parts" in metrics or "interventions" in metrics:
        assert part_maps is not None and discriminative is not None
        fracs = [settings.area_fraction] + list(settings.fractions)
        prec, rec, inside = pr_curves(maps, part_maps, discriminative, fracs, settings.min_coverage)
        k = area_pixels(settings.area_fraction, h * w)
        centre = top_pixels(centre_map[:1], k).expand(b, h, w)  # the same prior for every image
        pc, rc, _ = segment_precision_recall(centre, part_maps, discriminative, settings.min_coverage)
        rand_segments = top_pixels(resize_maps(chance, (h, w)), k)  # (draws, B, H, W), all draws at once
        rand_prec, rand_rec, rand_inside = segment_precision_recall(
            rand_segments, part_maps, discriminative, settings.min_coverage
        )
        fp, fr = whole_face_precision_recall(part_maps, discriminative)
    if "parts" in metrics:
        columns = {
            "precision": prec[:, 0],
            "recall": rec[:, 0],
            "chance_random_precision": rand_prec.nanmean(0),
            "chance_random_recall": rand_rec.nanmean(0),
            "chance_face_precision": fp,
            "chance_face_recall": fr,
            "chance_centre_precision": pc,
            "chance_centre_recall": rc,
        }
        values = {key: _floats(v.tolist()) for key, v in columns.items()}  # one tolist per column, not per image
        curve_p, curve_r, held = prec[:, 1:].tolist(), rec[:, 1:].tolist(), inside[:, 0].tolist()
        for i in range(b):
            out[i].update(
                {key: v[i] for key, v in values.items()},
                parts_in_segment=[name for name, x in zip(names, held[i]) if x],
                pr_precision=_floats(curve_p[i]),
                pr_recall=_floats(curve_r[i]),
            )
    if "interventions" in metrics:
        assert score_fn is not None and switched is not None and part_maps is not None and discriminative is not None
        p = discriminative.shape[1]
        effects = part_effects(score_fn, images, switched, p, settings.batch_size)
        sw = torch.zeros(b, p, dtype=torch.bool)
        for i, row in enumerate(switched):
            sw[i, list(row)] = True
        visible = part_pixels(part_maps, p) > 0
        scores = intervention_scores(part_mass(maps, part_maps, p), effects, visible, inside[:, 0], sw)
        share = single_part_share(top_pixels(resize_maps(maps, (h, w)), k), part_maps, sw)
        rand_scores = [
            intervention_scores(part_mass(c, part_maps, p), effects, visible, r, sw)
            for c, r in zip(chance, rand_inside)
        ]
        rand_share = torch.stack([single_part_share(s, part_maps, sw) for s in rand_segments])
        for i in range(b):
            out[i].update(
                part_effects={
                    names[j]: round(float(effects[i, j]), 6) for j in torch.nonzero(sw[i]).flatten().tolist()
                },
                part_mass={
                    names[j]: round(float(v), 6)
                    for j, v in enumerate(part_mass(maps[i : i + 1], part_maps[i : i + 1], p)[0])
                    if visible[i, j]
                },
                intervention_spearman=_f(scores["intervention_spearman"][i]),
                top_part_hit=_f(scores["top_part_hit"][i]),
                single_part_share=_f(share[i]),
                chance_random_intervention_spearman=_f(
                    torch.stack([r["intervention_spearman"][i] for r in rand_scores]).nanmean()
                ),
                chance_random_top_part_hit=_f(torch.stack([r["top_part_hit"][i] for r in rand_scores]).nanmean()),
                chance_random_single_part_share=_f(rand_share[:, i].nanmean()),
            )
    modes = [m for m in ("deletion", "insertion") if m in metrics]
    if modes or "road" in metrics:
        assert score_fn is not None
        curve_chance = {k: {"random": chance[0], "centre": centre_map}[k] for k in settings.curve_chance}
    if modes:
        unperturbed = batch_scores(score_fn, images, settings.batch_size)  # one end of every curve
    for mode in modes:
        base = baseline_images(images, getattr(settings, f"{mode}_baseline"))
        # both ends of every curve are the image and its baseline, shared by the map's and the chance maps'
        ends = torch.stack([unperturbed, batch_scores(score_fn, base, settings.batch_size)], 1)
        kw = dict(mode=mode, baseline=base, steps=settings.steps, batch_size=settings.batch_size, ends=ends)
        curves, auc = perturbation_curves(score_fn, images, maps, **kw)
        chance_runs = {k: perturbation_curves(score_fn, images, m, **kw) for k, m in curve_chance.items()}
        _add_curves(out, mode, curves, auc, chance_runs)
    if "road" in metrics:
        kw = dict(fractions=tuple(settings.road_fractions), noise=settings.road_noise, seed=settings.seed)
        curves, auc = road_curves(score_fn, images, maps, batch_size=settings.batch_size, **kw)
        chance_runs = {
            k: road_curves(score_fn, images, m, batch_size=settings.batch_size, **kw) for k, m in curve_chance.items()
        }
        _add_curves(out, "road", curves, auc, chance_runs)
    if "randomisation" in metrics:
        assert model is not None and explain_fn is not None
        blocks, rho, rho_abs = cascading_randomisation(model, explain_fn, images, seed=settings.seed)
        for i in range(b):
            out[i].update({f"randomisation_spearman_{n}": _f(rho[i, j]) for j, n in enumerate(blocks)})
            out[i].update({f"randomisation_abs_spearman_{n}": _f(rho_abs[i, j]) for j, n in enumerate(blocks)})
    return out


def _add_curves(
    out: list[dict[str, object]],
    name: str,
    curves: Tensor,
    auc: Tensor,
    chance: dict[str, tuple[Tensor, Tensor]],
) -> None:
    """Add ``<name>_auc``, ``<name>_curve``, and for each chance map ``chance_<map>_<name>_auc`` and
    its curve ``<name>_<map>_curve`` (drawn as the chance line of the curve figure) to each image's record."""
    for i, record in enumerate(out):
        record.update({f"{name}_auc": _f(auc[i]), f"{name}_curve": [round(float(v), 5) for v in curves[i]]})
        record.update({f"chance_{k}_{name}_auc": _f(v[1][i]) for k, v in chance.items()})
        record.update({f"{name}_{k}_curve": [round(float(v), 5) for v in c[0][i]] for k, c in chance.items()})


def margin_fn(logits_fn: Callable[[Tensor], Tensor], class_a: Tensor, class_b: Tensor) -> ScoreFn:
    """SCOUT's explained score ``m = logit_a - logit_b`` as a :data:`ScoreFn`: row n of the input
    derives from image ``index[n]``, explained as ``class_a[index[n]]`` against ``class_b[index[n]]``."""

    def score(x: Tensor, index: Tensor) -> Tensor:
        logits = logits_fn(x)
        idx = index.to(logits.device)
        a, b = class_a.to(logits.device)[idx], class_b.to(logits.device)[idx]
        return logits.gather(1, a[:, None])[:, 0] - logits.gather(1, b[:, None])[:, 0]

    return score


def _f(v: Tensor | float) -> float | None:
    x = float(v)
    return None if x != x else round(x, 6)


def _floats(values: list[float]) -> list[float | None]:
    """:func:`_f` of every entry of a list (e.g. a ``Tensor.tolist()``: no tensor access per entry)."""
    return [None if x != x else round(x, 6) for x in values]
