"""A PNG grid of FaceParts samples: image with landmarks beside its coloured part map.

``python -m scout_exp.data.faceparts_grid OUT.png`` writes one for the default configuration.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from scout_exp.data.faceparts import LANDMARK_NAMES, PART_NAMES, FaceParts
from scout_exp.errors import UserError, exit_on_user_error
from scout_exp.io import save_figure
from scout_exp.plotting import pyplot

_LANDMARK_COLOURS = ("cyan", "magenta", "yellow", "lime", "orange")


def part_colours() -> np.ndarray:
    """RGB colours (len(PART_NAMES) + 1, 3) in [0, 1]: black background, then one per part."""
    table = pyplot().get_cmap("tab20")(np.linspace(0, 1, 20))[:, :3]
    return np.concatenate([[[0.0, 0.0, 0.0]], table[: len(PART_NAMES)]])


def save_sample_grid(path: str | os.PathLike[str], faceparts: FaceParts, indices: Sequence[int]) -> Path:
    """Save samples (image + landmarks, part map) with a part legend as a PNG, atomically."""
    indices = [int(i) for i in indices]
    if not indices:
        raise UserError("no sample indices to draw; pass at least one index")
    cols = min(4, len(indices))
    rows = math.ceil(len(indices) / cols)
    fig, axes = pyplot().subplots(rows, 2 * cols, figsize=(3.0 * cols, 1.65 * rows + 0.9), squeeze=False)
    cmap = ListedColormap(part_colours())
    for ax in axes.ravel():
        ax.axis("off")
    for k, index in enumerate(indices):
        sample = faceparts.render(index)
        ax_img, ax_map = axes[k // cols, 2 * (k % cols)], axes[k // cols, 2 * (k % cols) + 1]
        ax_img.imshow(sample.image)
        ax_img.scatter(sample.landmarks[:, 0], sample.landmarks[:, 1], s=6, c=list(_LANDMARK_COLOURS), linewidths=0)
        ax_img.set_title(f"#{index} id {sample.identity}", fontsize=7)
        ax_map.imshow(sample.parts, cmap=cmap, vmin=-0.5, vmax=len(PART_NAMES) + 0.5, interpolation="nearest")
        ax_map.set_title("parts", fontsize=7)
    handles = [Patch(color=c, label=n) for c, n in zip(part_colours()[1:], PART_NAMES)]
    handles += [Patch(color=c, label=n) for c, n in zip(_LANDMARK_COLOURS, LANDMARK_NAMES)]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=6, frameon=False)
    fig.subplots_adjust(bottom=0.9 / (1.65 * rows + 0.9), wspace=0.05, hspace=0.25)
    return save_figure(fig, path)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write a grid of the first samples of the default FaceParts configuration."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--count", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("--difficulty", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    fp = FaceParts(image_size=args.image_size, difficulty=args.difficulty, seed=args.seed)
    print(save_sample_grid(args.out, fp, range(min(args.count, len(fp)))))


if __name__ == "__main__":
    main()
