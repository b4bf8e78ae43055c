"""Leaderboard of explanation runs: methods x variants x confidence heads x layers on the same pairs.

The verdict (:func:`verdict`, last line of ``leaderboard.md``, the plot's title and printed by
``python -m scout_exp.sweeps leaderboard``) says whether the best setting is distinguishable: it
names the settings whose 95% CI overlaps the best one's (a tie) and the chance rows it does not
beat (CIs overlapping, or a mean no better than chance).

Reads the ``summary.json`` of every job under a folder (an ``explain.py -m`` multirun), ranks the
jobs by one metric's mean (with its 95% bootstrap CI; which direction is better, and which chance
rows it has, the registered metric declares: ``Metric.scores``, ``Metric.chance``) and adds the
chance rows (random map per target layer, whole face, centre prior) measured by the same runs.
Writes ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.png`` (means with CI bars, chance
rows hatched, the random map's mean as a dashed line, the best setting and those tied with it
marked) and ``report.html`` (the table, sortable, with a link to each run's own ``report.html``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scout_exp.errors import UserError
from scout_exp.io import atomic_path, save_figure
from scout_exp.metrics.catalogue import chance_labels, score_direction
from scout_exp.report import write_leaderboard_report
from scout_exp.sweeps.collect import find_jobs

SETTING = ("attribution", "variant", "confidence", "layer")


def lower_is_better(metric: str, summaries: Sequence[Mapping[str, Any]] = ()) -> bool:
    """Whether a lower ``metric`` is better, as the registered metric that writes it declares
    (``Metric.scores``), or else the ``score_directions`` the runs' ``summaries`` recorded (a plug-in
    metric); higher for a score nobody declares."""
    declared = {k: v for s in summaries for k, v in (s.get("score_directions") or {}).items()}
    return score_direction(metric, declared) == "lower"


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
    summaries, jobs = [], {}
    for job in find_jobs(root):
        try:
            s = json.loads((job / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if s.get("task") == "explain" and s.get("status") == "ok":
            summaries.append(s)
            jobs[id(s)] = job
    available = sorted({k for s in summaries for k in s if f"{k}_ci" in s and not k.startswith("chance_")})
    if not summaries:
        raise UserError(
            f"no finished explain job under {root}: leaderboard ranks explain.py multiruns; "
            f"for a train.py sweep run: python -m scout_exp.sweeps collect {root}"
        )
    if metric not in available:
        raise UserError(
            f"no explain job under {root} has metric {metric!r}; available: {', '.join(available) or 'none'} "
            "(run explain.py -m with metrics=[...])"
        )
    columns = [metric] + [c for c in (columns or available) if c != metric and c in available]
    rows: list[dict[str, Any]] = []
    out = Path(out_dir) if out_dir else root
    for s in summaries:
        if metric in s:
            rows.append(
                {
                    "name": " / ".join(str(s.get(k)) for k in SETTING),
                    **{c: _cell(s, c) for c in columns},
                    "pairs": s.get("pairs"),
                    "n": s.get(f"{metric}_n"),
                    "chance": False,
                    "report": _report_link(jobs[id(s)], out),
                }
            )
    for key, label in chance_labels(metric).items():  # the chance maps of the metric ranked by
        by_layer: dict[str, dict[str, Any]] = {}
        for s in summaries:
            name = f"chance: {label}" + (f" ({s.get('layer')})" if key == "random" else "")
            if name not in by_layer and _cell(s, f"chance_{key}_{metric}") is not None:
                by_layer[name] = {c: _cell(s, f"chance_{key}_{c}") for c in columns}
                by_layer[name].update(name=name, pairs=s.get("pairs"), n=s.get(f"chance_{key}_{metric}_n"), chance=True)
        rows += by_layer.values()
    lower = lower_is_better(metric, summaries)
    sign = 1 if lower else -1
    rows.sort(key=lambda r: sign * r[metric][0] if r[metric] else math.inf)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": _write_csv(rows, columns, out / "leaderboard.csv"),
        "md": _write_md(rows, columns, metric, lower, out / "leaderboard.md"),
        "png": _plot(rows, metric, lower, out / "leaderboard.png"),
    }
    files["html"] = write_leaderboard_report(out / "report.html", rows, columns, metric, lower, "leaderboard.png")
    return files


def _report_link(job: Path, out: Path) -> str | None:
    """The job's ``report.html`` relative to ``out`` (None when the job wrote none: an older run)."""
    report = job / "report.html"
    return Path(os.path.relpath(report.resolve(), out.resolve())).as_posix() if report.is_file() else None


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


def _write_md(rows: list[dict[str, Any]], columns: list[str], metric: str, lower: bool, path: Path) -> Path:
    order = "lower" if lower else "higher"
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
    line = verdict(rows, metric, lower)
    if line:
        lines += ["", line]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path


def overlaps(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Whether two (mean, low, high) cells cannot be told apart: equal means, or 95% CIs that overlap."""
    if a[0] == b[0]:
        return True
    if not all(math.isfinite(v) for v in (*a[1:], *b[1:])):
        return False
    return a[1] <= b[2] and b[1] <= a[2]


def judge(rows: list[dict[str, Any]], metric: str, lower: bool = False) -> dict[str, Any]:
    """The best setting of ``rows`` (sorted best first, ``lower``: lower is better) and the rows it
    cannot be told apart from.

    Returns ``best`` (its row, or None without a scored setting), ``ties`` (other settings whose
    cell :func:`overlaps` the best one's) and ``chance`` (chance rows that overlap it or whose mean is
    at least as good).
    """
    scored = [r for r in rows if r[metric] and not r["chance"]]
    if not scored:
        return {"best": None, "ties": [], "chance": []}
    best = scored[0]
    cell = best[metric]

    def not_beaten(r: dict[str, Any]) -> bool:
        return overlaps(cell, r[metric]) or (r[metric][0] <= cell[0] if lower else r[metric][0] >= cell[0])

    ties = [r for r in scored[1:] if overlaps(cell, r[metric])]
    chance = [r for r in rows if r["chance"] and r[metric] and not_beaten(r)]
    return {"best": best, "ties": ties, "chance": chance}


def verdict(rows: list[dict[str, Any]], metric: str, lower: bool = False) -> str:
    """One line: the best setting by ``metric``, whether it ties with others (overlapping 95% CIs)
    and whether it is at chance (``lower``: lower is better); "" without a scored setting."""
    j = judge(rows, metric, lower)
    if j["best"] is None:
        return ""
    line = f"Best by {metric}: {j['best']['name']} ({_fmt(j['best'][metric])})"
    if j["ties"]:
        line += f"; TIED: not distinguishable from {len(j['ties'])} other setting(s) (overlapping 95% CIs)"
    if j["chance"]:
        line += f"; AT CHANCE: not above {', '.join(r['name'].removeprefix('chance: ') for r in j['chance'])}"
    if not j["ties"] and not j["chance"]:
        line += "; its 95% CI is clear of every other setting and of chance"
    return line


def read_verdict(md: Path) -> str:
    """The verdict line of a ``leaderboard.md`` ("" when it has none)."""
    lines = [line for line in Path(md).read_text().splitlines() if line.startswith("Best by ")]
    return lines[-1] if lines else ""


def _plot(rows: list[dict[str, Any]], metric: str, lower: bool, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [r for r in rows if r[metric]]
    j = judge(rows, metric, lower)
    tied = {id(r) for r in j["ties"]}
    fig = Figure(figsize=(7.5, 0.3 * len(shown) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for y, r in enumerate(shown):
        mean, lo, hi = r[metric]
        err = [[mean - lo], [hi - mean]] if math.isfinite(lo) else None
        colour = "0.8" if r["chance"] else ("C1" if r is j["best"] else "C0")
        ax.barh(y, mean, xerr=err, color=colour, hatch="//" if r["chance"] else None)
        if id(r) in tied:
            ax.text(hi if math.isfinite(hi) else mean, y, "  tie with best", va="center", fontsize=7)
    chance = next((r for r in shown if r["chance"] and r["name"].startswith("chance: random map")), None)
    if chance is not None:
        ax.axvline(chance[metric][0], color="k", ls="--", lw=0.9, label=f"{chance['name']}: {chance[metric][0]:.3f}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(range(len(shown)), [r["name"] for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (mean, 95% CI; orange: best, grey hatched: chance rows)")
    line = verdict(rows, metric, lower)
    ax.set_title(line.replace("; ", "\n", 1).replace("; ", ";\n"), fontsize=7, loc="left")
    return save_figure(fig, path)
