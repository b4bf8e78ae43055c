"""Figures of explanation runs: the per-pair grid and the precision-recall curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scout_exp.io import save_figure  # noqa: E402

COLUMNS = (
    ("class_map", "a(y*)"),
    ("counter_map", "a(y^c)"),
    ("confidence_map", "a(s)"),
    ("a_abar", "a * abar"),
    ("a_abar_as", "a * abar * a(s)"),
)


def _normalise(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def save_pair_figure(path: Path, rows: Sequence[dict], title: str) -> Path:
    """One row per explained image: the image, its maps (upsampled, min-max) and the segment overlay.

    Each row dict holds ``image`` (uint8 RGB), ``label`` (row title), the maps named in
    ``COLUMNS`` at image size, and ``segment`` (bool, image size).
    """
    ncols = 2 + len(COLUMNS)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols, 2.1 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        image = row["image"]
        axes[r, 0].imshow(image)
        axes[r, 0].set_title(row["label"], fontsize=7)
        for c, (key, name) in enumerate(COLUMNS, start=1):
            axes[r, c].imshow(image)
            axes[r, c].imshow(_normalise(row[key]), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[r, c].set_title(name, fontsize=8)
        overlay = image.astype(np.float32) * 0.35
        overlay[row["segment"]] = image[row["segment"]]
        axes[r, -1].imshow(overlay.astype(np.uint8))
        axes[r, -1].contour(row["segment"], levels=[0.5], colors="yellow", linewidths=0.8)
        axes[r, -1].set_title(row.get("segment_label", "segment"), fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_pr_figure(
    path: Path, fractions: Sequence[float], precision: np.ndarray, recall: np.ndarray, label: str
) -> Path:
    """Mean precision and recall of the discriminant segments against the parts that really differ."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.plot(recall, precision, marker=".", label=label)
    ax1.axhline(precision[-1], ls="--", color="grey", lw=0.8, label="whole face (chance level)")
    ax1.set_xlabel("recall")
    ax1.set_ylabel("precision")
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1.02)
    ax1.set_title("SCOUT part precision-recall")
    ax1.legend(fontsize=8)
    ax2.plot(fractions, precision, label="precision")
    ax2.plot(fractions, recall, label="recall")
    ax2.set_xlabel("segment area fraction")
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=8)
    ax2.set_title("by segment size")
    fig.tight_layout()
    return save_figure(fig, path)
