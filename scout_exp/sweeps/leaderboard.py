"""Leaderboard of explanation runs: methods x variants x confidence heads x layers on the same pairs.

Reads the ``summary.json`` of every job under a folder (an ``explain.py -m`` multirun), ranks the
jobs by one metric's mean (with its 95% bootstrap CI) and adds the chance rows (random map per
target layer, whole face, centre prior) measured by the same runs. Writes ``leaderboard.md``,
``leaderboard.csv`` and ``leaderboard.png`` (means with CI bars, chance rows hatched).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from scout_exp.errors import UserError
from scout_exp.io import atomic_path, save_figure
from scout_exp.sweeps.collect import find_jobs

#: metrics where lower is better
LOWER_IS_BETTER = ("deletion_auc", "road_auc")
SETTING = ("attribution", "variant", "confidence", "layer")
CHANCE = (("random", "random map"), ("face", "whole face"), ("centre", "centre prior"))


def _cell(summary: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    mean, ci = summary.get(key), summary.get(f"{key}_ci") or [None, None]
    if not isinstance(mean, (int, float)):
        return None
    lo, hi = (math.nan if v is None else float(v) for v in ci)
    return float(mean), lo, hi


def leaderboard(
    root: str | Path, metric: str = "precision", columns: list[str] | None = None, out_dir: str | Path | None = None
) -> dict[str, Path]:
    """Rank the explain jobs under ``root`` by ``metric``; returns the written files.

    Errors: UserError when no explain job holds ``metric`` (names the metrics that exist).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass an explain multirun, e.g. outputs/explain/multiruns/<time>")
    summaries = []
    for job in find_jobs(root):
        try:
            s = json.loads((job / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if s.get("task") == "explain" and s.get("status") == "ok":
            summaries.append(s)
    available = sorted({k for s in summaries for k in s if f"{k}_ci" in s and not k.startswith("chance_")})
    if metric not in available:
        raise UserError(
            f"no explain job under {root} has metric {metric!r}; available: {', '.join(available) or 'none'} "
            "(run explain.py -m with metrics=[...])"
        )
    columns = [metric] + [c for c in (columns or available) if c != metric and c in available]
    rows: list[dict[str, Any]] = []
    for s in summaries:
        if metric in s:
            rows.append(
                {
                    "name": " / ".join(str(s.get(k)) for k in SETTING),
                    **{c: _cell(s, c) for c in columns},
                    "pairs": s.get("pairs"),
                    "n": s.get(f"{metric}_n"),
                    "chance": False,
                }
            )
    for key, label in CHANCE:
        by_layer = {}
        for s in summaries:
            name = f"chance: {label}" + (f" ({s.get('layer')})" if key == "random" else "")
            if name not in by_layer and _cell(s, f"chance_{key}_{metric}") is not None:
                by_layer[name] = {c: _cell(s, f"chance_{key}_{c}") for c in columns}
                by_layer[name].update(name=name, pairs=s.get("pairs"), n=s.get(f"chance_{key}_{metric}_n"), chance=True)
        rows += by_layer.values()
    sign = 1 if metric in LOWER_IS_BETTER else -1
    rows.sort(key=lambda r: sign * r[metric][0] if r[metric] else math.inf)
    out = Path(out_dir) if out_dir else root
    out.mkdir(parents=True, exist_ok=True)
    return {
        "csv": _write_csv(rows, columns, out / "leaderboard.csv"),
        "md": _write_md(rows, columns, metric, out / "leaderboard.md"),
        "png": _plot(rows, metric, out / "leaderboard.png"),
    }


def _fmt(cell: tuple[float, float, float] | None) -> str:
    if cell is None:
        return ""
    mean, lo, hi = cell
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else f"{mean:.3f}"


def _write_csv(rows: list[dict[str, Any]], columns: list[str], path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["setting", "pairs", "n"] + [f"{c}{s}" for c in columns for s in ("", "_ci_low", "_ci_high")])
        for r in rows:
            w.writerow([r["name"], r["pairs"], r["n"]] + [v for c in columns for v in (r[c] or ("", "", ""))])
    return path


def _write_md(rows: list[dict[str, Any]], columns: list[str], metric: str, path: Path) -> Path:
    order = "lower" if metric in LOWER_IS_BETTER else "higher"
    lines = [
        f"Sorted by {metric} ({order} is better); mean [95% bootstrap CI]; "
        f"setting = attribution / variant / confidence / layer; n = images where {metric} is defined.",
        "",
        "| setting | pairs | n | " + " | ".join(columns) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for r in rows:
        name = f"*{r['name']}*" if r["chance"] else r["name"]
        lines.append(f"| {name} | {r['pairs']} | {r['n']} | " + " | ".join(_fmt(r[c]) for c in columns) + " |")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path


def _plot(rows: list[dict[str, Any]], metric: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r[metric]]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(shown) + 1.2))
    for y, r in enumerate(shown):
        mean, lo, hi = r[metric]
        err = [[mean - lo], [hi - mean]] if math.isfinite(lo) else None
        ax.barh(y, mean, xerr=err, color="0.8" if r["chance"] else "C0", hatch="//" if r["chance"] else None)
    ax.set_yticks(range(len(shown)), [r["name"] for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean, 95% CI)")
    return save_figure(fig, path)
