"""One batch's metric inputs and the quantities several metrics share, each computed once on demand.

The random chance maps, the centre prior, the PR curves of the maps, the random maps' segments and
the unperturbed images' scores are cached by their arguments: ``parts`` and ``interventions`` share
the part curves and random segments, ``deletion`` and ``insertion`` the images' scores, and every
metric the same chance maps (so the numbers do not depend on which metrics run together).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.metrics.chance import centre_prior, random_maps
from scout_exp.metrics.options import CurveOptions
from scout_exp.metrics.parts import area_pixels, pr_curves, resize_maps, segment_precision_recall, top_pixels
from scout_exp.metrics.perturbation import ScoreFn, batch_scores


class BatchContext:
    """A batch to score: what :func:`scout_exp.metrics.score_batch` was given, plus shared lazy results.

    Shapes: ``images`` (B, C, H, W) as the model sees them; ``maps`` (B, h, w) raw at the target
    layer's resolution (kept as float on the CPU); ``part_maps`` (B, H, W) part indices (-1
    elsewhere) naming ``part_names``; ``discriminative`` (B, P) bool; ``switched[i]`` part index ->
    switched (C, H, W) image of ``images[i]``. ``score_fn(x, index)``: (N, C, H, W) perturbed images
    and (N,) the image each row derives from -> (N,) explained scores. ``explain_fn`` recomputes
    ``maps`` from ``images`` with ``model``.
    """

    def __init__(
        self,
        *,
        images: Tensor,
        maps: Tensor,
        score_fn: ScoreFn | None = None,
        part_maps: Tensor | None = None,
        discriminative: Tensor | None = None,
        part_names: Sequence[str] = (),
        switched: Sequence[dict[int, Tensor]] | None = None,
        model: nn.Module | None = None,
        explain_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.images = images
        self.maps = maps.detach().float().cpu()
        self.part_names = list(part_names)
        self._inputs = {
            "score_fn": score_fn,
            "part_maps": part_maps,
            "discriminative": discriminative,
            "switched": switched,
            "model": model,
            "explain_fn": explain_fn,
        }
        self._cache: dict[Hashable, Any] = {}

    @property
    def batch(self) -> int:
        """B, the number of images."""
        return self.images.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return tuple(self.images.shape[-2:])  # type: ignore[return-value]

    def require(self, name: str) -> Any:
        """The input ``name`` (``score_fn``, ``part_maps``, ``discriminative``, ``switched``, ``model``,
        ``explain_fn``); ValueError when the caller did not pass it (a metric whose ``needs`` were not met)."""
        value = self._inputs[name]
        if value is None:
            raise ValueError(f"a metric needs {name}, which score_batch was not given (check the metric's needs)")
        return value

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` and batch."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def chance_maps(self, draws: int, seed: int) -> Tensor:
        """(draws, B, h, w) uniform random maps at the maps' resolution, from a generator seeded ``seed``."""
        return self.cached(
            ("chance", draws, seed),
            lambda: random_maps(
                self.batch, (self.maps.shape[-2], self.maps.shape[-1]), draws, torch.Generator().manual_seed(seed)
            ),
        )

    def centre_prior(self, centre: tuple[float, float], sigma: float) -> Tensor:
        """(B, H, W) the centre prior (:func:`scout_exp.metrics.chance.centre_prior`) at the images' size."""
        return self.cached(("centre", tuple(centre), sigma), lambda: centre_prior(self.batch, self.size, centre, sigma))

    def part_curves(
        self, area_fraction: float, fractions: Sequence[float], min_coverage: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:func:`scout_exp.metrics.parts.pr_curves` of the maps at ``[area_fraction, *fractions]``:
        precision, recall (B, 1 + F) and the parts inside (B, 1 + F, P)."""
        fracs = [area_fraction] + list(fractions)
        return self.cached(
            ("part_curves", tuple(fracs), min_coverage),
            lambda: pr_curves(
                self.maps, self.require("part_maps"), self.require("discriminative"), fracs, min_coverage
            ),
        )

    def segment_pixels(self, area_fraction: float) -> int:
        """Pixels of an ``area_fraction`` segment of the images (SCOUT's rounding, :func:`area_pixels`)."""
        h, w = self.size
        return area_pixels(area_fraction, h * w)

    def random_segments(
        self, draws: int, seed: int, area_fraction: float, min_coverage: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The random maps' ``area_fraction`` segments (draws, B, H, W), all draws at once, and their
        part precision, recall (draws, B) and parts inside (draws, B, P)."""

        def compute() -> tuple[Tensor, Tensor, Tensor, Tensor]:
            k = self.segment_pixels(area_fraction)
            segments = top_pixels(resize_maps(self.chance_maps(draws, seed), self.size), k)
            prec, rec, inside = segment_precision_recall(
                segments, self.require("part_maps"), self.require("discriminative"), min_coverage
            )
            return segments, prec, rec, inside

        return self.cached(("random_segments", draws, seed, area_fraction, min_coverage), compute)

    def image_scores(self, batch_size: int) -> Tensor:
        """(B,) explained scores of the unperturbed images (one end of every deletion/insertion curve)."""
        return self.cached(
            ("image_scores", batch_size), lambda: batch_scores(self.require("score_fn"), self.images, batch_size)
        )

    def curve_chance_maps(self, options: CurveOptions) -> dict[str, Tensor]:
        """The chance maps of ``options.curve_chance``: ``random`` the first random map (B, h, w),
        ``centre`` the centre prior (B, H, W)."""
        make = {
            "random": lambda: self.chance_maps(options.chance_draws, options.seed)[0],
            "centre": lambda: self.centre_prior(options.centre, options.centre_sigma),
        }
        return {k: make[k]() for k in options.curve_chance}
