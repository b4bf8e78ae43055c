"""Figures of the explanation metrics: the mean curve of every curve metric, part effect against attribution mass.

The metrics declare their figure (``Metric.figure``, :mod:`scout_exp.metrics.base`): a
:class:`scout_exp.metrics.base.Curve` (deletion, insertion, ROAD, a plug-in's) is drawn in
``perturbation_curves.png``, ``"part_effects"`` (interventions) is the scatter. Each curve has
its chance line: the mean curve of the random maps (``<metric>_random_curve`` of the records,
dashed, same colour) and of the centre prior when it was run (dotted). Drawn with
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
from scout_exp.metrics import Curve, Metric
from scout_exp.metrics.catalogue import metric_classes

#: line style of each chance map's mean curve (others: dash-dot)
CHANCE_STYLES = {"random": "--", "centre": ":"}


def _items(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r[k] for r in records for k in ("image_1", "image_2") if k in r]


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def draw_curve_figure(
    records: Sequence[dict[str, Any]], metrics: Sequence[Metric] = (), title: str = ""
) -> Figure | None:
    """Mean curve of every :class:`Curve` metric in the records, with its chance lines; None without curves.

    ``records``: per-pair records (``image_1`` / ``image_2`` items holding ``<metric>_curve``,
    ``<metric>_auc``, ``chance_<map>_<metric>_auc`` and ``<metric>_<map>_curve``). ``metrics``: the
    built metrics of the run, whose options give a curve's x values (``Curve.x_option``; a metric
    not among them: its default options). ``title`` names the run (method, layer, variant). Each
    registered curve metric keeps its colour whichever run together.
    """
    items = _items(records)
    built = {m.name: m for m in metrics}
    kinds = [cls for cls in metric_classes() if isinstance(cls.figure, Curve)]
    curves = {cls.name: [i[f"{cls.name}_curve"] for i in items if f"{cls.name}_curve" in i] for cls in kinds}
    if not any(curves.values()):
        return None
    fig, ax = _figure(7.2, 3.6)
    for n, cls in enumerate(kinds):
        mode, rows, curve = cls.name, curves[cls.name], cls.figure
        assert isinstance(curve, Curve)
        if not rows:
            continue
        c = np.array(rows, dtype=float)
        options = built[mode].options if mode in built else cls.Options()
        x = np.asarray(getattr(options, curve.x_option)) if curve.x_option else np.linspace(0, 1, c.shape[1])
        value = np.nanmean([i[f"{mode}_auc"] for i in items if i.get(f"{mode}_auc") is not None])
        chance = np.nanmean(
            [i[f"chance_random_{mode}_auc"] for i in items if i.get(f"chance_random_{mode}_auc") is not None]
            or [np.nan]
        )
        label = curve.label.format(value=value, chance=chance)
        ax.plot(x, np.nanmean(c, 0), curve.style, ms=3, color=f"C{n}", label=label)
        for key, name in cls.chance.items():
            style = CHANCE_STYLES.get(key, "-.")
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
    folder: Path, records: Sequence[dict[str, Any]], metrics: Sequence[Metric], title: str = ""
) -> list[str]:
    """Write the figures the chosen ``metrics`` (built, with their options) declare; returns their
    names relative to the run folder. ``title``: what was explained (method, layer, variant),
    written on every figure.
    """
    items, names = _items(records), []
    figures = {m.figure if isinstance(m.figure, str) else "curve" for m in metrics if m.figure is not None}
    fig = draw_curve_figure(records, metrics, title) if "curve" in figures else None
    if fig is not None:
        save_png(fig, folder / "perturbation_curves.png", dpi=120)
        names.append("figures/perturbation_curves.png")
    pts = [(i["part_mass"].get(p, 0.0), d) for i in items if "part_effects" in i for p, d in i["part_effects"].items()]
    if pts and "part_effects" in figures:
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
