"""Means with 95% bootstrap confidence intervals over images (``scipy.stats.bootstrap``, percentile)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from scout_exp.metrics.catalogue import is_score

#: bootstrap resamples drawn at once (memory: RESAMPLE_BATCH x n values)
RESAMPLE_BATCH = 100


def mean_ci(
    values: Iterable[float], confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite ``values``; the interval is the bootstrap percentile interval.

    NaN values are dropped (undefined ratios). With fewer than 2 values the interval is NaN; with
    constant values it is the value itself. Resamples are drawn ``RESAMPLE_BATCH`` at a time (same
    numbers as all at once), so memory stays flat in the number of images: all 2,000 resamples of
    4,000 values at once are 64 MB of indices and 64 MB of values per score.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, 1
    if np.ptp(x) == 0:
        return mean, mean, mean, len(x)
    res = bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=seed,
        batch=RESAMPLE_BATCH,
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high), len(x)


def summarise(records: Sequence[Mapping[str, Any]], keys: Iterable[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Flat summary of per-image scalar scores: ``key`` (mean), ``key_ci`` ([low, high]) and ``key_n``.

    ``keys`` defaults to the metric scores (:func:`scout_exp.metrics.catalogue.is_score`) present in any record; records
    missing a key (or holding None, an undefined score) are skipped for it. ``kwargs`` go to
    :func:`mean_ci`.
    """
    if keys is None:
        keys = sorted({k for r in records for k in r if is_score(k)})
    out: dict[str, Any] = {}
    for key in keys:
        vals = [float(r[key]) for r in records if isinstance(r.get(key), (int, float))]
        mean, lo, hi, n = mean_ci(vals, **kwargs)
        out[key] = _json(mean)
        out[f"{key}_ci"] = [_json(lo), _json(hi)]
        out[f"{key}_n"] = n
    return out


def _json(v: float) -> float | None:
    return None if not math.isfinite(v) else round(v, 6)
