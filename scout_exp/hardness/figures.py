"""Risk-coverage figure comparing confidence scores (softmax, certainty, easiness)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scout_exp.io import save_figure
from scout_exp.plotting import pyplot

LABELS = {"softmax": "softmax $s^s$", "certainty": "certainty $s^c$", "easiness": "easiness $s^e = 1 - s^{hp}$"}


def save_risk_coverage_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    metrics: Mapping[str, Any],
    path: str | Path,
    title: str = "",
) -> Path:
    """Plot each score's selective risk against coverage on one axes (legend: AURC, error AUROC); save as PNG."""
    fig, ax = pyplot().subplots(figsize=(5.2, 4.0))
    for name, (coverage, risk) in curves.items():
        auroc = metrics.get(f"auroc_{name}")
        auroc_text = "n/a" if auroc is None else f"{auroc:.3f}"
        ax.step(
            coverage,
            risk,
            where="post",
            label=f"{LABELS.get(name, name)}: AURC {metrics[f'aurc_{name}']:.4f}, AUROC {auroc_text}",
        )
    errors = metrics.get("errors")
    samples = metrics.get("samples")
    if errors is not None and samples:
        coverage = np.linspace(1 / samples, 1.0, 200)
        oracle = np.clip(coverage - (1 - errors / samples), 0, None) / coverage
        ax.plot(coverage, oracle, "k:", lw=1, label=f"oracle: AURC {metrics['aurc_oracle']:.4f}")
    ax.set_xlabel("coverage (fraction of samples kept)")
    ax.set_ylabel("risk (error rate of kept samples)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title or f"risk-coverage ({samples} samples, {errors} errors)", fontsize=9)
    return save_figure(fig, path)
