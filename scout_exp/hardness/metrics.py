"""How well a confidence score flags a classifier's errors: AUROC, risk-coverage/AURC, ECE.

Usable for any head: :func:`evaluate_confidence` scores softmax and certainty from the logits
and any extra score (e.g. the easiness ``1 - s^hp``) given alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, multiclass_calibration_error

from scout_exp.heads.certainty import certainty_score
from scout_exp.heads.softmax import softmax_score


@dataclass
class ConfidenceReport:
    """Flat metrics (``auroc_<score>``, ``aurc_<score>``, ``ece_softmax``, ...) and risk-coverage curves."""

    metrics: dict[str, float | int | None]
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


def evaluate_confidence(
    logits: Tensor, labels: Tensor, extra_scores: dict[str, Tensor] | None = None, n_bins: int = 15
) -> ConfidenceReport:
    """Accuracy plus, per score (softmax s^s, certainty s^c, and ``extra_scores``), error AUROC and AURC.

    ``ece_softmax`` is torchmetrics' top-label expected calibration error (L1, ``n_bins`` bins);
    the other scores are not probabilities of being right, so they get no ECE.
    """
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    correct = logits.argmax(dim=1) == labels
    scores = {"softmax": softmax_score(logits), "certainty": certainty_score(logits)}
    scores.update({k: v.detach().float().cpu().reshape(-1) for k, v in (extra_scores or {}).items()})
    metrics: dict[str, float | int | None] = {
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
        curves[name] = risk_coverage_curve(score, correct)
    metrics["ece_softmax"] = float(
        multiclass_calibration_error(
            logits.softmax(dim=1), labels, num_classes=logits.shape[1], n_bins=n_bins, norm="l1"
        )
    )
    return ConfidenceReport(metrics=metrics, curves=curves)
