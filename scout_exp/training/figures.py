"""Figures every training run saves (and logs): a panel of training samples."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scout_exp.data.faceparts import FaceParts
from scout_exp.data.faceparts_grid import save_sample_grid
from scout_exp.io import save_figure
from scout_exp.plotting import pyplot


def save_samples_figure(datamodule: Any, path: Path, n: int) -> Path | None:
    """Save ``n`` training samples as a PNG; None when n is 0.

    On a part-annotated data set (``datamodule.part_data``, :mod:`scout_exp.data.part_annotated`)
    each image stands beside its part map; FaceParts' own grid adds its landmarks and part legend.
    """
    if n <= 0:
        return None
    train = datamodule.splits["train"][:n].tolist()
    part_data = datamodule.part_data
    if isinstance(part_data, FaceParts):
        return save_sample_grid(path, part_data, train)
    panels = 1 if part_data is None else 2
    cols = min(8 // panels, len(train))
    rows = math.ceil(len(train) / cols)
    fig, axes = pyplot().subplots(rows, panels * cols, figsize=(1.6 * panels * cols, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, index in enumerate(train):
        ax = axes[k // cols, panels * (k % cols)]
        if part_data is None:
            x, label = datamodule.dataset[index][:2]
            ax.imshow(datamodule.preprocess.invert(x))
        else:
            sample, label = part_data.part_sample(index), part_data.identity_of(index)
            ax.imshow(sample.image)
            part_ax = axes[k // cols, panels * (k % cols) + 1]
            part_ax.imshow(sample.part_map, cmap="tab20", vmin=-1, vmax=19, interpolation="nearest")
            part_ax.set_title("parts", fontsize=8)
        ax.set_title(f"id {label}", fontsize=8)
    return save_figure(fig, path)
