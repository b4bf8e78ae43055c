"""Option groups several metrics share (each field is one flat ``metric_options`` key).

A metric's ``Options`` dataclass inherits the groups it reads; a key read by several metrics (e.g.
``seed``) has one default and one check. Defaults: SCOUT's area fractions, the RISE reference
code's baselines, ROAD's fractions (``docs/metrics.md``); ``configs/explain.yaml`` repeats them
(a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from scout_exp.errors import UserError
from scout_exp.metrics.base import MetricOptions
from scout_exp.metrics.perturbation import BASELINES

#: chance maps the curve metrics (deletion, insertion, road) can be run with; each costs a curve
CURVE_CHANCE = ("random", "centre")


def check_at_least_one(options: MetricOptions, *keys: str) -> None:
    """UserError (one line) naming the first of ``keys`` whose value is below 1."""
    for key in keys:
        if getattr(options, key) < 1:
            raise UserError(f"metric_options.{key} must be >= 1, got {getattr(options, key)}")


@dataclass(frozen=True)
class ChanceOptions(MetricOptions):
    """Random chance maps: ``chance_draws`` maps per image (scores averaged), drawn with ``seed``."""

    chance_draws: int = 4
    seed: int = 0

    def check(self) -> None:
        """UserError unless ``chance_draws >= 1``."""
        check_at_least_one(self, "chance_draws")


@dataclass(frozen=True)
class CentreOptions(MetricOptions):
    """The centre prior: a Gaussian at ``centre`` = (x, y) image fractions, sigma a fraction of the side."""

    centre: tuple[float, float] = (0.5, 0.55)
    centre_sigma: float = 0.25


@dataclass(frozen=True)
class BatchOptions(MetricOptions):
    """``batch_size``: perturbed images per forward pass."""

    batch_size: int = 64

    def check(self) -> None:
        """UserError unless ``batch_size >= 1``."""
        check_at_least_one(self, "batch_size")


@dataclass(frozen=True)
class PartOptions(ChanceOptions):
    """SCOUT's segment protocol: the top ``area_fraction`` of the pixels (``segment.area_fraction``),
    the PR curve's ``fractions``, a part inside when the segment covers ``min_coverage`` of it."""

    area_fraction: float = 0.1
    fractions: Sequence[float] = field(
        default_factory=lambda: (0.005,) + tuple(round(0.01 * i, 2) for i in range(1, 100))
    )
    min_coverage: float = 0.5


@dataclass(frozen=True)
class CurveOptions(ChanceOptions, CentreOptions, BatchOptions):
    """The chance maps of a curve metric (``curve_chance``: from :data:`CURVE_CHANCE`)."""

    curve_chance: Sequence[str] = ("random",)

    def check(self) -> None:
        """UserError for a ``curve_chance`` that is not a list of :data:`CURVE_CHANCE` entries."""
        curve_chance = self.curve_chance
        if isinstance(curve_chance, str) or not set(curve_chance) <= set(CURVE_CHANCE):
            raise UserError(
                f"metric_options.curve_chance is a list of chance maps from: {', '.join(CURVE_CHANCE)}; got {curve_chance!r}"
            )


def check_baseline(mode: str, value: str) -> None:
    """UserError for a deletion/insertion baseline outside :data:`BASELINES`."""
    if value not in BASELINES:
        raise UserError(f"unknown {mode}_baseline {value!r}; choose one of: {', '.join(BASELINES)}")
