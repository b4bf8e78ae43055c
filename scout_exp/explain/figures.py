"""Figures of explanation runs: the per-pair grid and the precision-recall curve.

Every figure names what it shows: the attribution method, its layer, the discriminant variant and
the identities explained (title); every map panel has a colour bar of the map's raw values, signed
maps on a diverging scale centred on 0 (``SIGNED_CMAP``), non-negative ones on a sequential scale
(``UNSIGNED_CMAP``). On FaceParts the parts in which the two identities really differ are
outlined (``TRUTH_COLOUR``) and each image's part precision/recall is written on it.

A pair figure is ONE axes in inch coordinates (no axes, ticks or colour-bar axes per panel,
which cost about 13 ms each to build and draw): each panel is one image, blended with its map in
numpy; each colour bar a gradient strip with its tick labels as text; outlines are contours. It is
drawn on an Agg canvas with matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`,
no pyplot state, nothing to close) and saved in one draw (no tight bounding box, which draws
twice). Artists carry ids (``gid``) that say what they show, e.g. ``map:1:a_abar_as``,
``colorbar:1:a_abar_as``, ``truth:1``; tests read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from scout_exp.io import atomic_path

#: map panels of the pair figure: record key, panel title
COLUMNS = (
    ("class_map", "a(y*)"),
    ("counter_map", "a(y^c)"),
    ("confidence_map", "a(s)"),
    ("a_abar", "a * abar"),
    ("a_abar_as", "a * abar * a(s)"),
)
#: colour maps: signed maps diverge around 0, non-negative maps are sequential
SIGNED_CMAP, UNSIGNED_CMAP = "RdBu_r", "inferno"
_CMAPS = {name: colormaps[name] for name in (SIGNED_CMAP, UNSIGNED_CMAP, "Reds", "Blues")}  # the registry copies
#: outline of the ground-truth differing parts (FaceParts) and of the segment
TRUTH_COLOUR, SEGMENT_COLOUR = "cyan", "yellow"
#: resolution of the saved PNGs (dots per inch)
DPI = 100
#: pair-figure geometry in inches: panel side, colour-bar width, cell width and height, top margin
_PANEL, _CBAR, _CELL_W, _CELL_H, _TOP = 1.55, 0.07, 2.05, 2.3, 0.45


def is_signed(m: np.ndarray) -> bool:
    """Whether a map has negative values beyond float noise (below -1e-3 of its largest magnitude)."""
    lo, peak = float(np.min(m)), float(np.max(np.abs(m)))
    return peak > 0 and lo < -1e-3 * peak


def map_norm(m: np.ndarray) -> tuple[Normalize, str]:
    """Colour scale and colour map of a raw map: symmetric around 0 for a signed map, [0, max] else."""
    peak = float(np.max(np.abs(m))) or 1.0
    if is_signed(m):
        return Normalize(-peak, peak), SIGNED_CMAP
    return Normalize(0.0, peak), UNSIGNED_CMAP


def save_png(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write a :class:`Figure` as PNG, atomically (one draw, no tight bounding box; zlib level 1:
    the encoding took 40% of a pair figure at the default level 6, for files about 30% larger)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", pil_kwargs={"compress_level": 1})
    return Path(path)


class Canvas:
    """One axes spanning the figure, in inches from the top-left corner (y grows downwards)."""

    def __init__(self, width: float, height: float) -> None:
        self.fig = Figure(figsize=(width, height))
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_axis_off()
        self.ax.set_autoscale_on(False)
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(height, 0)

    def image(self, rgb: np.ndarray, left: float, top: float, width: float, height: float, gid: str) -> None:
        """Draw an (H, W, 3|4) image into the box whose top-left corner is (``left``, ``top``)."""
        self.ax.imshow(
            rgb, extent=(left, left + width, top + height, top), aspect="auto", interpolation="nearest", gid=gid
        )

    def outline(self, mask: np.ndarray | None, left: float, top: float, colour: str, gid: str, **kw: Any) -> None:
        """Contour of a (H, W) bool mask drawn over the panel at (``left``, ``top``)."""
        if mask is None or not mask.any() or mask.all():
            return
        h, w = mask.shape
        xs = left + (np.arange(w) + 0.5) * _PANEL / w
        ys = top + (np.arange(h) + 0.5) * _PANEL / h
        self.ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=0.9, **kw).set_gid(gid)

    def text(self, x: float, y: float, s: str, **kw: Any) -> None:
        self.ax.text(x, y, s, **kw)


def _limits(norm: Normalize) -> tuple[float, float]:
    """(vmin, vmax) of a colour scale; ValueError when one is still unset."""
    if norm.vmin is None or norm.vmax is None:
        raise ValueError("a map's colour scale needs both vmin and vmax")
    return norm.vmin, norm.vmax


def blend(image: np.ndarray, m: np.ndarray, norm: Normalize, cmap: str, alpha: float = 0.8) -> np.ndarray:
    """(H, W, 3) float RGB: ``image`` (uint8) under the colour-mapped map ``m``, each pixel's colour
    at opacity ``alpha`` times its magnitude (|m| / the scale's largest |value|): 0 leaves the face."""
    colours = _CMAPS[cmap](norm(m))[..., :3]  # sets the scale's unset limits from ``m``
    vmin, vmax = _limits(norm)
    weight = alpha * np.clip(np.abs(m) / max(abs(vmin), abs(vmax)), 0, 1)[..., None]
    return (1 - weight) * (image[..., :3] / 255.0) + weight * colours


def draw_map(
    canvas: Canvas,
    image: np.ndarray,
    m: np.ndarray,
    left: float,
    top: float,
    gid: str,
    scale: tuple[Normalize, str] | None = None,
) -> bool:
    """Panel of raw map ``m`` (H, W) over ``image`` (H, W, 3 uint8), and its colour bar on the right;
    returns whether the map is 0 everywhere. ``scale``: (norm, colour map) instead of :func:`map_norm`'s."""
    norm, cmap = scale or map_norm(m)
    canvas.image(blend(image, m, norm, cmap), left, top, _PANEL, _PANEL, gid)
    vmin, vmax = _limits(norm)
    x = left + _PANEL + 0.03
    strip = np.linspace(vmax, vmin, 64)[:, None]
    canvas.image(_CMAPS[cmap](norm(strip)), x, top, _CBAR, _PANEL, gid=f"colorbar:{gid.split(':', 1)[1]}")
    ticks = (vmax, 0.0, vmin) if vmin < 0 else (vmax, 0.0)
    for v in ticks:
        y = top + _PANEL * (vmax - v) / (vmax - vmin)
        canvas.text(x + _CBAR + 0.02, y, f"{v:.2g}", fontsize=5, va="center", ha="left")
    return not np.any(m)


def draw_pair_figure(rows: Sequence[Mapping[str, Any]], title: str, variant: str | None = None) -> Figure:
    """The pair figure as a :class:`Figure` (what :func:`save_pair_figure` writes; tests read it).

    Each row dict holds ``image`` (H, W, 3 uint8 RGB), ``label`` (row title), the maps named in
    ``COLUMNS`` that it has, raw at image size (H, W) float (missing ones are left out), ``segment``
    (H, W) bool, and optionally ``segment_label``, ``truth`` ((H, W) bool: the ground-truth parts in
    which the two identities differ, outlined on the image, the ``variant`` map and the segment) and
    ``scores`` (text under the segment, e.g. the image's part precision/recall).
    """
    columns = [(k, name) for k, name in COLUMNS if any(k in row for row in rows)]
    ncols = 2 + len(columns)
    fw, fh = _CELL_W * ncols, _CELL_H * len(rows) + _TOP
    canvas = Canvas(fw, fh)
    truth_drawn = False
    for r, row in enumerate(rows, start=1):
        image, truth = row["image"], row.get("truth")
        truth = None if truth is None else np.asarray(truth, dtype=bool)
        truth_drawn |= truth is not None and bool(truth.any())
        top = _TOP + (r - 1) * _CELL_H + 0.5

        def left(c: int) -> float:
            return c * _CELL_W + 0.12

        def caption(c: int, s: str, top: float = top) -> None:
            canvas.text(left(c) + _PANEL / 2, top - 0.03, s, fontsize=7, ha="center", va="bottom")

        canvas.image(image, left(0), top, _PANEL, _PANEL, gid=f"image:{r}")
        canvas.outline(truth, left(0), top, TRUTH_COLOUR, gid=f"truth:{r}")
        caption(0, row["label"])
        for c, (key, name) in enumerate(columns, start=1):
            if key not in row:
                continue
            used = key == variant
            zero = draw_map(canvas, image, np.asarray(row[key], dtype=np.float32), left(c), top, gid=f"map:{r}:{key}")
            caption(c, name + ("\n(segmented)" if used else "") + (" (0 everywhere)" if zero else ""))
            if used:
                canvas.outline(truth, left(c), top, TRUTH_COLOUR, gid=f"truth:{r}:{key}")
        c = ncols - 1
        seg = np.asarray(row["segment"], dtype=bool)
        overlay = image.astype(np.float32) * 0.35
        overlay[seg] = image[seg]
        canvas.image(overlay.astype(np.uint8), left(c), top, _PANEL, _PANEL, gid=f"segment:{r}")
        canvas.outline(seg, left(c), top, SEGMENT_COLOUR, gid=f"segment_outline:{r}")
        canvas.outline(truth, left(c), top, TRUTH_COLOUR, gid=f"truth:{r}:segment", linestyles="dashed")
        caption(c, row.get("segment_label", "segment"))
        if row.get("scores"):
            canvas.text(left(c) + _PANEL / 2, top + _PANEL + 0.03, row["scores"], fontsize=7, ha="center", va="top")
    note = (
        f"\n{TRUTH_COLOUR} outline: the parts in which the two identities differ (ground truth)" if truth_drawn else ""
    )
    canvas.fig.suptitle(title + note, fontsize=8, y=1 - 0.06 / fh, va="top")
    return canvas.fig


def save_pair_figure(path: Path, rows: Sequence[Mapping[str, Any]], title: str, variant: str | None = None) -> Path:
    """One row per explained image: the image, its maps (raw, with colour bars) and the segment overlay.

    ``rows`` and ``variant`` (the map the segment is cut from): see :func:`draw_pair_figure`.
    """
    return save_png(draw_pair_figure(rows, title, variant), path)


#: chance rows of the PR figure: summary key infix, legend label, marker
PR_CHANCE = (("random", "random map", "s"), ("centre", "centre prior", "^"), ("face", "whole face", "D"))


def pr_chance(summary: Mapping[str, Any]) -> dict[str, tuple[float, float, list[float | None] | None]]:
    """Chance rows of a run's ``summary.json`` for the PR figure: label -> (precision, recall,
    precision CI), for each of random map, centre prior and whole face that the summary holds."""
    out = {}
    for key, label, _ in PR_CHANCE:
        p, r = summary.get(f"chance_{key}_precision"), summary.get(f"chance_{key}_recall")
        if isinstance(p, (int, float)) and isinstance(r, (int, float)):
            out[label] = (float(p), float(r), summary.get(f"chance_{key}_precision_ci"))
    return out


def draw_pr_figure(
    fractions: Sequence[float],
    precision: np.ndarray,
    recall: np.ndarray,
    label: str,
    chance: Mapping[str, tuple[float, float, Any]] | None = None,
    area_fraction: float | None = None,
) -> Figure:
    """The PR figure as a :class:`Figure` (what :func:`save_pr_figure` writes; tests read it).

    ``fractions`` (N,) segment area fractions with the mean ``precision`` and ``recall`` (N,) at
    each; ``chance``: :func:`pr_chance` rows, drawn as points at ``area_fraction`` (the segment size
    they were measured at), with the precision's 95% CI; without a whole-face row the curve's
    largest segment stands for it.
    """
    chance = dict(chance or {})
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(recall, precision, marker=".", label=label)
    face = chance.pop("whole face", None)
    level = face[0] if face else float(precision[-1])
    ax1.axhline(level, ls="--", color="grey", lw=0.8, label=f"chance: whole face (precision {level:.2f})")
    markers = {lab: m for _, lab, m in PR_CHANCE}
    at = f" at {area_fraction:.0%} area" if area_fraction is not None else ""
    for i, (name, (p, r, ci)) in enumerate(chance.items()):
        err = None
        if ci and all(isinstance(v, (int, float)) for v in ci):
            err = [[max(p - ci[0], 0)], [max(ci[1] - p, 0)]]
        colour = f"C{i + 2}"
        ax1.errorbar(
            [r],
            [p],
            yerr=err,
            fmt=markers.get(name, "o"),
            color=colour,
            ms=6,
            capsize=3,
            ls="none",
            label=f"chance: {name}{at} (P {p:.2f}, R {r:.2f})",
        )
        if area_fraction is not None:
            ax2.plot([area_fraction], [p], markers.get(name, "o"), color=colour, ms=6, label=f"{name}: precision")
    ax1.set_xlabel("recall")
    ax1.set_ylabel("precision")
    ax1.set_xlim(0, 1.02)
    ax1.set_ylim(0, 1.02)
    ax1.set_title("SCOUT part precision-recall", fontsize=9)
    ax1.legend(fontsize=6.5, loc="upper right")
    ax2.plot(fractions, precision, label="precision")
    ax2.plot(fractions, recall, label="recall")
    ax2.axhline(level, ls="--", color="grey", lw=0.8)
    ax2.set_xlabel("segment area fraction")
    ax2.set_ylim(0, 1.02)
    ax2.legend(fontsize=6.5)
    ax2.set_title("by segment size (markers: chance precision)" if chance else "by segment size", fontsize=9)
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    return fig


def save_pr_figure(
    path: Path,
    fractions: Sequence[float],
    precision: np.ndarray,
    recall: np.ndarray,
    label: str,
    chance: Mapping[str, tuple[float, float, Any]] | None = None,
    area_fraction: float | None = None,
) -> Path:
    """Mean precision and recall of the discriminant segments against the parts that really differ,
    with the chance rows; arguments: :func:`draw_pr_figure`."""
    return save_png(draw_pr_figure(fractions, precision, recall, label, chance, area_fraction), path, dpi=120)
