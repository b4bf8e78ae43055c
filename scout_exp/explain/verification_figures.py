"""Figures of verification explanations: each image with its similar, different and signed evidence."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from scout_exp.explain.figures import SIGNED_CMAP, Canvas, draw_map, save_png
from scout_exp.explain.verification import DEGENERATE_MASS


def save_verification_figure(
    path: Path,
    images: Sequence[np.ndarray],
    similar: Sequence[np.ndarray],
    different: Sequence[np.ndarray],
    labels: Sequence[str],
    title: str,
) -> Path:
    """One row per image (probe, reference): the image, its similar (red) and different (blue) evidence,
    and the signed map (similar - different, diverging around 0, red: similar), on one colour scale
    per row, each with a colour bar. A row without evidence (degenerate) says so instead of showing
    empty maps. ``images`` (H, W, 3) uint8; maps (H, W) float at image size. Drawn like the pair
    figure (:func:`scout_exp.explain.figures.draw_map`: one axes, no pyplot state).
    """
    return save_png(draw_verification_figure(images, similar, different, labels, title), path)


def draw_verification_figure(
    images: Sequence[np.ndarray],
    similar: Sequence[np.ndarray],
    different: Sequence[np.ndarray],
    labels: Sequence[str],
    title: str,
) -> Figure:
    """The figure :func:`save_verification_figure` writes, as a :class:`Figure` (tests read it)."""
    cell_w, cell_h, panel, top_margin = 2.05, 2.3, 1.55, 0.4
    fw, fh = 4 * cell_w, cell_h * len(images) + top_margin
    canvas = Canvas(fw, fh)
    for r, (image, sim, diff, label) in enumerate(zip(images, similar, different, labels), start=1):
        total = float(sim.sum() + diff.sum())
        scale = float(max(sim.max(), diff.max())) or 1.0
        top = top_margin + (r - 1) * cell_h + 0.5

        def caption(c: int, text: str, top: float = top) -> None:
            canvas.text(c * cell_w + 0.12 + panel / 2, top - 0.03, text, fontsize=7, ha="center", va="bottom")

        canvas.image(image, 0.12, top, panel, panel, gid=f"image:{r}")
        caption(0, label)
        degenerate = total < DEGENERATE_MASS
        panels = (
            (sim, (Normalize(0, scale), "Reds"), "similar", f"similar ({sim.sum() / (total or 1):.0%})"),
            (diff, (Normalize(0, scale), "Blues"), "different", f"different ({diff.sum() / (total or 1):.0%})"),
            (sim - diff, (Normalize(-scale, scale), SIGNED_CMAP), "signed", "signed: similar - different"),
        )
        for c, (m, norm_cmap, key, text) in enumerate(panels, start=1):
            left = c * cell_w + 0.12
            if degenerate:
                canvas.image(image, left, top, panel, panel, gid=f"image:{r}:{key}")
                caption(
                    c,
                    f"{key}: none (degenerate)"
                    if c < 3
                    else "no evidence: |map| < 1e-9\n(e.g. an image against itself)",
                )
                continue
            draw_map(canvas, image, np.asarray(m, dtype=np.float32), left, top, f"map:{r}:{key}", norm_cmap)
            caption(c, text)
    canvas.fig.suptitle(title, fontsize=8, y=1 - 0.06 / fh, va="top", wrap=True)
    return canvas.fig
