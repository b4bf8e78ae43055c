"""Figures of the explanation metrics: mean deletion/insertion/ROAD curves, part effect against attribution mass.

Each curve has its chance line: the mean curve of the random maps (``<metric>_random_curve`` of
the records, dashed, same colour) and of the centre prior when it was run (dotted). Drawn with
matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scout_exp.explain.figures import save_png
from scout_exp.metrics.road import FRACTIONS

#: chance maps whose mean curve is drawn with each metric's curve: record key infix, label, line style
CHANCE_LINES = (("random", "random map", "--"), ("centre", "centre prior", ":"))

#: legend of each curve: its mean score, the random map's, and which direction is good
LABELS = {
    "deletion": "deletion: AUC {value:.2f}\n(random map {chance:.2f}; lower is better)",
    "insertion": "insertion: AUC {value:.2f}\n(random map {chance:.2f}; higher is better)",
    "road": "ROAD, most relevant first:\nmean {value:.2f} (random map {chance:.2f};\nlower is better)",
}


def _items(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r[k] for r in records for k in ("image_1", "image_2") if k in r]


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def draw_curve_figure(
    records: Sequence[dict[str, Any]], road_fractions: Sequence[float] = FRACTIONS, title: str = ""
) -> Figure | None:
    """Mean deletion / insertion / ROAD curves of the records with their chance lines; None without curves.

    ``records``: per-pair records (``image_1`` / ``image_2`` items holding ``<metric>_curve``,
    ``<metric>_auc``, ``chance_<map>_<metric>_auc`` and ``<metric>_<map>_curve``). ``title``
    names the run (method, layer, variant).
    """
    items = _items(records)
    curves = {m: [i[f"{m}_curve"] for i in items if f"{m}_curve" in i] for m in ("deletion", "insertion", "road")}
    if not any(curves.values()):
        return None
    fig, ax = _figure(7.2, 3.6)
    for n, (mode, rows) in enumerate(curves.items()):
        if not rows:
            continue
        c = np.array(rows, dtype=float)
        x = np.asarray(road_fractions) if mode == "road" else np.linspace(0, 1, c.shape[1])
        value = np.nanmean([i[f"{mode}_auc"] for i in items if i.get(f"{mode}_auc") is not None])
        chance = np.nanmean(
            [i[f"chance_random_{mode}_auc"] for i in items if i.get(f"chance_random_{mode}_auc") is not None]
            or [np.nan]
        )
        label = LABELS[mode].format(value=value, chance=chance)
        ax.plot(x, np.nanmean(c, 0), "o-" if mode == "road" else "-", ms=3, color=f"C{n}", label=label)
        for key, name, style in CHANCE_LINES:
            chance_rows = [i[f"{mode}_{key}_curve"] for i in items if f"{mode}_{key}_curve" in i]
            if chance_rows:
                aucs = [v for i in items if (v := i.get(f"chance_{key}_{mode}_auc")) is not None]
                auc = float(np.mean(aucs)) if aucs else float("nan")
                ax.plot(
                    x,
                    np.nanmean(np.array(chance_rows, dtype=float), 0),
                    style,
                    color=f"C{n}",
                    lw=1.0,
                    alpha=0.8,
                    label=f"  chance: {name} ({mode} {auc:.2f})",
                )
    ax.set_xlabel("fraction of pixels perturbed (most important first)")
    ax.set_ylabel("explained score")
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}mean over {max(len(r) for r in curves.values())} images; dashed: chance", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def save_metric_figures(
    folder: Path,
    records: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    road_fractions: Sequence[float] = FRACTIONS,
    title: str = "",
) -> list[str]:
    """Write the figures the chosen metrics have; returns their names relative to the run folder.

    ``road_fractions``: the removal fractions the ``road_curve`` values were taken at; ``title``:
    what was explained (method, layer, variant), written on every figure.
    """
    items, names = _items(records), []
    fig = draw_curve_figure(records, road_fractions, title)
    if fig is not None:
        save_png(fig, folder / "perturbation_curves.png", dpi=120)
        names.append("figures/perturbation_curves.png")
    pts = [(i["part_mass"].get(p, 0.0), d) for i in items if "part_effects" in i for p, d in i["part_effects"].items()]
    if pts:
        fig, ax = _figure(4.5, 3.6)
        m, d = np.array(pts).T
        ax.scatter(m, d, s=8, alpha=0.6)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("attribution mass on the part (share of the map)")
        ax.set_ylabel("effect on the margin of switching the part")
        if title:
            ax.set_title(title, fontsize=8)
        fig.tight_layout()
        save_png(fig, folder / "part_effects.png", dpi=120)
        names.append("figures/part_effects.png")
    return names
