"""Figures every training run saves (and logs): a panel of training samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scout_exp.io import save_figure  # noqa: E402


def save_samples_figure(datamodule: Any, path: Path, n: int) -> Path | None:
    """Save ``n`` training samples (with part maps on FaceParts) as a PNG; None when n is 0."""
    if n <= 0:
        return None
    train = datamodule.splits["train"][:n].tolist()
    faceparts = getattr(datamodule, "faceparts", None)
    if faceparts is not None:
        from scout_exp.data.faceparts_grid import save_sample_grid

        return save_sample_grid(path, faceparts, train)
    cols = min(8, len(train))
    rows = math.ceil(len(train) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), train):
        x, label = datamodule.dataset[index][:2]
        ax.imshow(datamodule.preprocess.invert(x))
        ax.set_title(f"id {label}", fontsize=8)
    return save_figure(fig, path)
