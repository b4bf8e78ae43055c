"""How well a confidence score flags a classifier's errors: AUROC, risk-coverage/AURC, FPR at 95% TPR, ECE.

Usable for any head: :func:`evaluate_confidence` scores the logit baselines
(:mod:`scout_exp.hardness.baselines`) and any extra score (e.g. the easiness ``1 - s^hp``) given
alongside, each with a 95% bootstrap confidence interval (:func:`bootstrap_ci`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_roc, multiclass_calibration_error

from scout_exp.hardness.baselines import baseline_scores

#: the error-detection measures with a bootstrap CI, in table order (AUROC: higher is better; others lower)
MEASURES = ("auroc", "aurc", "fpr95")


@dataclass
class ConfidenceReport:
    """Flat metrics (``auroc_<score>``, ``aurc_<score>``, ``ece_softmax``, ...) and risk-coverage curves."""

    metrics: dict[str, float | int | list[float] | None]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def error_detection_auroc(confidence: Tensor, correct: Tensor) -> float:
    """AUROC of ``confidence`` for telling correct predictions (high) from errors (low).

    0.5 is chance, 1 a perfect split; NaN when there are no errors or no correct predictions.
    """
    correct = correct.bool().reshape(-1)
    if bool(correct.all()) or not bool(correct.any()):
        return math.nan
    return float(binary_auroc(confidence.detach().double().reshape(-1).cpu(), correct.long().cpu()))


def risk_coverage_curve(confidence: Tensor, correct: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk (error rate of the kept samples) against coverage, keeping the most confident first.

    Written here because torchmetrics has no risk-coverage curve. Samples with equal confidence
    are kept or rejected together, so the curve has one point per distinct confidence value.
    """
    conf = confidence.detach().double().reshape(-1).cpu().numpy()
    err = (~correct.bool().reshape(-1)).cpu().numpy().astype(np.float64)
    if conf.size == 0:
        raise ValueError("risk-coverage needs at least one sample")
    order = np.argsort(-conf, kind="stable")
    conf, err = conf[order], err[order]
    ends = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))  # last index of each tie group
    kept = ends + 1
    return kept / conf.size, np.cumsum(err)[ends] / kept


def aurc(confidence: Tensor, correct: Tensor) -> float:
    """Area under the risk-coverage curve (Geifman et al. 2019): mean selective risk over coverages.

    Each curve point weighs by the fraction of samples it adds (1/N without ties); lower is better.
    """
    coverage, risk = risk_coverage_curve(confidence, correct)
    return float(np.sum(np.diff(coverage, prepend=0.0) * risk))


def oracle_aurc(correct: Tensor) -> float:
    """The AURC of a perfect score (every correct sample before every error, no ties): the best reachable."""
    correct = correct.bool().reshape(-1).cpu()
    kept = np.arange(1, correct.numel() + 1, dtype=np.float64)
    return float(np.mean(np.clip(kept - int(correct.sum()), 0, None) / kept))


def fpr_at_95_tpr(confidence: Tensor, correct: Tensor) -> float:
    """FPR at 95% TPR: the share of errors still accepted when the threshold keeps 95% of the correct predictions.

    Positives are the correct predictions (high confidence); the threshold is the highest one whose
    TPR reaches 0.95, read off torchmetrics' ROC curve. Lower is better (0 perfect; about 0.95 for a
    random score). NaN when there are no errors or no correct predictions.
    """
    correct = correct.bool().reshape(-1).cpu()
    if bool(correct.all()) or not bool(correct.any()):
        return math.nan
    fpr, tpr, _ = binary_roc(confidence.detach().double().reshape(-1).cpu(), correct.long())
    return float(fpr[tpr >= 0.95].min())


def detection_measures(confidence: np.ndarray, correct: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC, AURC and FPR at 95% TPR of many resamples at once: (..., N) -> (3, ...) in :data:`MEASURES` order.

    The same definitions as :func:`error_detection_auroc` (Mann-Whitney U with mid-ranks for ties),
    :func:`aurc` (tie groups kept or rejected together) and :func:`fpr_at_95_tpr`, written vectorised
    over the leading axes because a bootstrap evaluates them on a thousand resamples; the tests check
    them against those (torchmetrics-based) functions. NaN where a resample has no error or no hit.
    """
    conf = np.moveaxis(np.asarray(confidence, dtype=np.float64), axis, -1)
    good = np.moveaxis(np.asarray(correct, dtype=bool), axis, -1)
    n = conf.shape[-1]
    n_pos = good.sum(axis=-1)
    n_neg = n - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        ranks = stats.rankdata(conf, axis=-1)
        auroc = ((ranks * good).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        order = np.argsort(-conf, axis=-1, kind="stable")
        sorted_conf = np.take_along_axis(conf, order, axis=-1)
        errors = ~np.take_along_axis(good, order, axis=-1)
        risk = np.cumsum(errors, axis=-1) / np.arange(1, n + 1)
        last = np.concatenate([sorted_conf[..., 1:] != sorted_conf[..., :-1], np.ones_like(conf[..., :1], bool)], -1)
        group_end = np.where(last, np.arange(n), n)  # each sample takes the risk at the end of its tie group
        group_end = np.flip(np.minimum.accumulate(np.flip(group_end, -1), axis=-1), -1)
        aurc_value = np.take_along_axis(risk, group_end, axis=-1).mean(axis=-1)
        k = np.ceil(0.95 * n_pos - 1e-9).astype(np.int64)  # the k-th highest hit is the threshold
        hits_desc = -np.sort(-np.where(good, conf, -np.inf), axis=-1)
        threshold = np.take_along_axis(hits_desc, np.clip(k - 1, 0, n - 1)[..., None], axis=-1)
        fpr = ((conf >= threshold) & ~good).sum(axis=-1) / n_neg
    degenerate = (n_pos == 0) | (n_neg == 0)
    return np.stack([np.where(degenerate, np.nan, auroc), aurc_value, np.where(degenerate, np.nan, fpr)])


def bootstrap_ci(
    confidence: Tensor, correct: Tensor, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap CIs (``level``) of AUROC, AURC and FPR@95 under resampling of the samples.

    ``scipy.stats.bootstrap`` resamples (confidence, correct) pairs ``n_resamples`` times and
    evaluates :func:`detection_measures` on all of them at once; percentile intervals (not BCa,
    whose jackknife costs N more evaluations). None for a measure undefined on some resample
    (e.g. a resample without errors).
    """
    conf = confidence.detach().double().reshape(-1).cpu().numpy()
    good = correct.bool().reshape(-1).cpu().numpy()
    with warnings.catch_warnings():  # a resample without errors: the interval is reported as None below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (conf, good),
            detection_measures,
            n_resamples=n_resamples,
            confidence_level=level,
            method="percentile",
            paired=True,
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    low, high = np.atleast_1d(result.confidence_interval.low), np.atleast_1d(result.confidence_interval.high)
    return {
        name: None if not (np.isfinite(lo) and np.isfinite(hi)) else (float(lo), float(hi))
        for name, lo, hi in zip(MEASURES, low, high, strict=True)
    }


def evaluate_confidence(
    logits: Tensor,
    labels: Tensor,
    extra_scores: dict[str, Tensor] | None = None,
    n_bins: int = 15,
    n_resamples: int = 1000,
) -> ConfidenceReport:
    """Accuracy plus, per score (the logit baselines and ``extra_scores``), error AUROC, AURC and FPR@95 with CIs.

    Keys per score: ``auroc_<score>``, ``aurc_<score>``, ``fpr95_<score>`` and their 95% bootstrap
    intervals ``<measure>_<score>_ci`` = [low, high] (``n_resamples`` resamples; 0: no intervals).
    ``ece_softmax`` is torchmetrics' top-label expected calibration error (L1, ``n_bins`` bins);
    the other scores are not probabilities of being right, so they get no ECE.
    """
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    correct = logits.argmax(dim=1) == labels
    scores = baseline_scores(logits)
    scores.update({k: v.detach().float().cpu().reshape(-1) for k, v in (extra_scores or {}).items()})
    metrics: dict[str, float | int | list[float] | None] = {
        "accuracy": float(correct.double().mean()),
        "errors": int((~correct).sum()),
        "samples": int(correct.numel()),
        "aurc_oracle": oracle_aurc(correct),
    }
    curves = {}
    for name, score in scores.items():
        auroc = error_detection_auroc(score, correct)
        metrics[f"auroc_{name}"] = None if math.isnan(auroc) else auroc
        metrics[f"aurc_{name}"] = aurc(score, correct)
        fpr = fpr_at_95_tpr(score, correct)
        metrics[f"fpr95_{name}"] = None if math.isnan(fpr) else fpr
        if n_resamples:
            for measure, interval in bootstrap_ci(score, correct, n_resamples).items():
                metrics[f"{measure}_{name}_ci"] = None if interval is None else list(interval)
        curves[name] = risk_coverage_curve(score, correct)
    metrics["ece_softmax"] = float(
        multiclass_calibration_error(
            logits.softmax(dim=1), labels, num_classes=logits.shape[1], n_bins=n_bins, norm="l1"
        )
    )
    return ConfidenceReport(metrics=metrics, curves=curves)
