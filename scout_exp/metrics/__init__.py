"""Explanation-quality metrics: registered :class:`Metric` classes on batched tensors (no Hydra, no Lightning).

A metric is one module of :mod:`scout_exp.metrics.registered` (or a plug-in) declaring itself in
class attributes (:mod:`scout_exp.metrics.base`); :func:`build_metrics` builds the chosen ones with
their options, :func:`score_batch` scores a batch of maps with them and their chance rows, and
:func:`summarise` turns the per-image records into means with 95% bootstrap confidence intervals.
The registry-derived queries are in :mod:`scout_exp.metrics.catalogue`; the definitions and their
sources in ``docs/metrics.md``.
"""

from __future__ import annotations

from scout_exp.metrics.base import METRICS, Curve, Metric, MetricOptions, register_metric
from scout_exp.metrics.catalogue import build_metrics, check_metrics, metric_names
from scout_exp.metrics.context import BatchContext
from scout_exp.metrics.perturbation import perturbation_curves
from scout_exp.metrics.scoring import margin_fn, score_batch
from scout_exp.metrics.stats import mean_ci, summarise

__all__ = [
    "METRICS",
    "BatchContext",
    "Curve",
    "Metric",
    "MetricOptions",
    "build_metrics",
    "check_metrics",
    "margin_fn",
    "mean_ci",
    "metric_names",
    "perturbation_curves",
    "register_metric",
    "score_batch",
    "summarise",
]
