"""Test-stage evaluation of interpretable face recognition (docs/method.md section 4, "Evaluation").

:class:`EvalCollector` gathers, batch by batch, the 320-d features, labels, accuracy under synthetic
occlusion and each filter's peak on each face; :meth:`EvalCollector.compute` turns them into

- verification on all pairs of labelled test faces (cosine score): TAR at FAR 1e-1 .. 1e-4, EER;
- closed-set identification: gallery = the first test face of each identity, probes = the others,
  CMC Rank-1/5;
- or, for an evaluation-protocol data module (LFW pairs, IJB-A templates), its own metrics;
- ``acc_occluded``: accuracy of the classifier on the occluded test faces;
- per-filter average peak location, deviation and spread ``d`` (``scout_exp.interp.peaks``) in a
  ``peak_frame`` pixel frame (96 by default, the paper's), optionally aligned through landmarks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from scout_exp.evaluation.identification import cmc
from scout_exp.evaluation.verification import eer, tar_at_far
from scout_exp.interp.occlusion import apply_transform, fit_transform
from scout_exp.interp.peaks import mean_face, peak_points, plot_peaks, spread_of
from scout_exp.mirror import mirror_run

log = logging.getLogger(__name__)

MAX_VERIFICATION_FACES = 4000
"""All-pairs verification uses at most this many faces (8 million pairs); the first ones in order."""


def pair_verification(
    features: torch.Tensor, labels: torch.Tensor, fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4)
) -> dict[str, float]:
    """TAR at each FAR, EER and pair counts over all pairs i < j of labelled faces (cosine scores)."""
    f = torch.nn.functional.normalize(features[:MAX_VERIFICATION_FACES].double(), dim=1)
    y = labels[:MAX_VERIFICATION_FACES]
    i, j = torch.triu_indices(len(y), len(y), offset=1)
    scores = (f[i] * f[j]).sum(dim=1).numpy()
    same = (y[i] == y[j]).numpy()
    out = {f"tar@far={far:g}": tar for far, tar in tar_at_far(scores, same, fars).items()}
    out["eer"] = eer(scores, same)
    out["n_genuine"] = float(same.sum())
    out["n_impostor"] = float((~same).sum())
    return out


def gallery_probe_identification(
    features: torch.Tensor, labels: torch.Tensor, ranks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """CMC with the first face of each identity as its gallery entry and every other face a probe."""
    y = labels.numpy()
    _, first = np.unique(y, return_index=True)
    is_gallery = np.zeros(len(y), dtype=bool)
    is_gallery[first] = True
    f = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    sim = f[~is_gallery] @ f[is_gallery].T
    return {f"rank{k}": rate for k, rate in cmc(sim, y[~is_gallery], y[is_gallery], ranks).items()}


def aggregate_peaks(points: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Weighted average location (C, 2), deviation (C,) and spread d of peaks (N, C, 2) with weights (N, C).

    The aggregation of :func:`scout_exp.interp.peaks.peak_locations`, on collected peaks: the test
    stage keeps one point per face and filter instead of every (C, 24, 24) map.
    """
    total = weight.sum(dim=0)
    safe = total.clamp_min(torch.finfo(torch.float64).tiny)
    mean = (weight.unsqueeze(-1) * points).sum(dim=0) / safe.unsqueeze(-1)
    deviation = (weight * (points - mean.unsqueeze(0)).norm(dim=-1)).sum(dim=0) / safe
    valid = total > 0
    mean[~valid] = float("nan")
    deviation[~valid] = float("nan")
    return mean, deviation, spread_of(mean[valid])


class EvalCollector:
    """Accumulates what the test stage needs from each batch (on the CPU, one point per filter)."""

    def __init__(self, peak_frame: tuple[int, int] = (96, 96), sign: str = "pos") -> None:
        self.peak_frame = peak_frame
        self.sign = sign
        self.features: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.points: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self.landmarks: list[torch.Tensor] = []
        self.image_sum: torch.Tensor | None = None
        self.count = 0
        self.occluded_correct = 0
        self.occluded_total = 0

    def add(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        features: torch.Tensor,
        masked_maps: torch.Tensor,
        landmarks: torch.Tensor | None = None,
        occluded_logits: torch.Tensor | None = None,
    ) -> None:
        """One batch: images (B, 3, S, S) in [-1, 1], labels (B,; -1 = none), features (B, D),
        peak-masked maps (B, C, h, w), landmarks (B, K, 2) in input pixels, occluded-image logits."""
        self.features.append(features.detach().float().cpu())
        self.labels.append(labels.detach().cpu())
        points, weight = peak_points(masked_maps.float(), self.sign, self.peak_frame)
        self.points.append(points.cpu())
        self.weights.append(weight.cpu())
        if landmarks is not None:
            scale = torch.tensor([self.peak_frame[1] / images.shape[-1], self.peak_frame[0] / images.shape[-2]])
            self.landmarks.append(landmarks.detach().double().cpu() * scale.double())
        batch_sum = images.detach().double().sum(dim=0).cpu()
        self.image_sum = batch_sum if self.image_sum is None else self.image_sum + batch_sum
        self.count += images.shape[0]
        if occluded_logits is not None:
            keep = labels >= 0
            self.occluded_correct += int((occluded_logits.argmax(dim=1)[keep] == labels[keep]).sum())
            self.occluded_total += int(keep.sum())

    def compute(
        self,
        fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4),
        ranks: Sequence[int] = (1, 5),
        protocol: Callable[[torch.Tensor], dict[str, float]] | None = None,
        align: bool = True,
    ) -> dict[str, Any]:
        """Metrics (``metrics`` dict of floats), peak locations and deviations, and the mean face."""
        features = torch.cat(self.features)
        labels = torch.cat(self.labels)
        metrics: dict[str, float] = {}
        if protocol is not None:
            metrics.update(protocol(features))
        else:
            labelled = labels >= 0
            f, y = features[labelled], labels[labelled]
            _, per_identity = torch.unique(y, return_counts=True)
            if len(per_identity) > 1 and bool((per_identity > 1).any()):
                metrics.update(pair_verification(f, y, fars))
                metrics.update(gallery_probe_identification(f, y, ranks))
            else:
                log.warning(
                    "verification and identification skipped: the test split needs two identities "
                    "and an identity with two faces (raise data.test_fraction)"
                )
        if self.occluded_total:
            metrics["acc_occluded"] = self.occluded_correct / self.occluded_total
        points, weight = torch.cat(self.points), torch.cat(self.weights)
        if align and self.landmarks:
            lm = torch.cat(self.landmarks)
            reference = lm.mean(dim=0, keepdim=True).expand(lm.shape[0], -1, -1)
            points = apply_transform(fit_transform(lm, reference, "similarity"), points)
        locations, deviations, spread = aggregate_peaks(points, weight)
        metrics["peak_spread_d"] = spread
        metrics["peak_filters"] = float((weight.sum(dim=0) > 0).sum())
        if self.image_sum is None:
            raise ValueError("no test image was added: nothing to evaluate")
        face = mean_face((self.image_sum / self.count).unsqueeze(0))
        h, w = self.peak_frame
        if face.shape[:2] != (h, w):
            face = cv2.resize(face, (w, h), interpolation=cv2.INTER_LINEAR)
        return {"metrics": metrics, "locations": locations.numpy(), "deviations": deviations.numpy(), "mean_face": face}


def log_peak_figure(
    results: dict[str, Any], path: str | os.PathLike[str], title: str | None, loggers: Sequence[Any] = ()
) -> Path:
    """Save the paper-style figure (average peak per filter on the mean face) and log it as ``peaks``."""
    out = plot_peaks(results["mean_face"], results["locations"], path, results["deviations"], title)
    mirror_run(loggers, images={"peaks": [str(out)]})
    return out
