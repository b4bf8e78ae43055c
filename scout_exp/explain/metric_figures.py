"""Figures of the explanation metrics: mean deletion/insertion/ROAD curves, part effect against attribution mass."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scout_exp.io import save_figure  # noqa: E402
from scout_exp.metrics.road import FRACTIONS  # noqa: E402

#: legend of each curve: its mean score, the random map's, and which direction is good
LABELS = {
    "deletion": "deletion: AUC {value:.2f}\n(random map {chance:.2f}; lower is better)",
    "insertion": "insertion: AUC {value:.2f}\n(random map {chance:.2f}; higher is better)",
    "road": "ROAD, most relevant first:\nmean {value:.2f} (random map {chance:.2f};\nlower is better)",
}


def _items(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r[k] for r in records for k in ("image_1", "image_2") if k in r]


def save_metric_figures(
    folder: Path, records: Sequence[dict[str, Any]], metrics: Sequence[str], road_fractions: Sequence[float] = FRACTIONS
) -> list[str]:
    """Write the figures the chosen metrics have; returns their names relative to the run folder.

    ``road_fractions``: the removal fractions the ``road_curve`` values were taken at.
    """
    items, names = _items(records), []
    curves = {m: [i[f"{m}_curve"] for i in items if f"{m}_curve" in i] for m in ("deletion", "insertion", "road")}
    if any(curves.values()):
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        for mode, rows in curves.items():
            if rows:
                c = np.array(rows, dtype=float)
                x = np.asarray(road_fractions) if mode == "road" else np.linspace(0, 1, c.shape[1])
                value = np.nanmean([i[f"{mode}_auc"] for i in items if i.get(f"{mode}_auc") is not None])
                chance = np.nanmean(
                    [i[f"chance_random_{mode}_auc"] for i in items if i.get(f"chance_random_{mode}_auc") is not None]
                )
                label = LABELS[mode].format(value=value, chance=chance)
                ax.plot(x, np.nanmean(c, 0), "o-" if mode == "road" else "-", ms=3, label=label)
        ax.set_xlabel("fraction of pixels perturbed (most important first)")
        ax.set_ylabel("explained score")
        ax.set_title(f"mean over {max(len(r) for r in curves.values())} images", fontsize=9)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        save_figure(fig, folder / "perturbation_curves.png")
        names.append("figures/perturbation_curves.png")
    pts = [(i["part_mass"].get(p, 0.0), d) for i in items if "part_effects" in i for p, d in i["part_effects"].items()]
    if pts:
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        m, d = np.array(pts).T
        ax.scatter(m, d, s=8, alpha=0.6)
        ax.set_xlabel("attribution mass on the part (share of the map)")
        ax.set_ylabel("effect on the margin of switching the part")
        save_figure(fig, folder / "part_effects.png")
        names.append("figures/part_effects.png")
    return names
