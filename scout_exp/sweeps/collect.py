"""Gather the jobs of a Hydra multirun into one table (CSV, Markdown) and a plot of one metric.

A job is a folder holding ``summary.json`` (written by train.py / explain.py, also for failed jobs)
or Hydra's ``.hydra/overrides.yaml`` (a job that never wrote its summary: still running, or killed).
Its columns: the job folder, its status, its command-line overrides (parsed with Hydra's own override
grammar), the scalar entries of its summary, and for explanation runs the per-pair means of
``explanations.json``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import yaml

from scout_exp.errors import UserError
from scout_exp.io import atomic_path, save_figure
from scout_exp.metrics.catalogue import score_direction

#: metrics tried, in order, when neither --metric nor the runs' ``optimized_metric`` names one
DEFAULT_METRICS = ("val_acc", "precision", "recall", "piou", "test_acc")
#: words of training metrics' names in which lower is better (the plot marks the lowest bar as the best);
#: an explanation metric's direction is the one its registered class declares (``Metric.scores``)
LOWER_IS_BETTER_WORDS = ("loss", "error", "ece", "aurc", "risk", "time")
#: per-image values of explanations.json averaged into ``explain_mean_<name>`` columns
PAIR_SCORES = ("confidence", "prob_class", "prob_counter", "segment_area_fraction")
Value = str | int | float | bool | None


@dataclass
class Results:
    """One row per job; ``overrides`` lists the override keys, ``varying`` those whose value differs."""

    root: Path
    rows: list[dict[str, Value]]
    overrides: list[str]
    varying: list[str]
    metric: str | None
    goal: str = "max"
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every column: job, status, the overrides, then the other fields in order of first appearance."""
        head = ["job", "status", *self.overrides]
        rest = [k for row in self.rows for k in row if k not in head and k != "error"]
        return head + list(dict.fromkeys(rest)) + ["error"]


def collect(
    root: str | Path, metric: str | None = None, out_dir: str | Path | None = None, goal: str | None = None
) -> Results:
    """Read every job under ``root``; write ``results.csv``, ``results.md`` and ``results_<metric>.png``.

    ``goal`` (max | min) says which value of the metric is best; None: :func:`default_goal`.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass a multirun folder such as outputs/train/multiruns/<time>")
    jobs = find_jobs(root)
    if not jobs:
        raise UserError(f"no jobs under {root}: no summary.json or .hydra/overrides.yaml below it")
    read = [read_job(job, root) for job in jobs]
    rows = [row for row, _ in read]
    if all(row["status"] == "unreadable" for row in rows):
        raise UserError(f"no readable job under {root}: {rows[0]['error']}")
    overrides = list(dict.fromkeys(k for _, keys in read for k in keys))
    varying = [k for k in overrides if len({_text(row.get(k)) for row in rows}) > 1]
    metric = choose_metric(rows, metric, jobs)
    if goal is None:
        goal = default_goal(metric)
    elif goal not in ("max", "min"):
        raise UserError(f"goal must be max or min, not {goal!r}")
    results = Results(root, rows, overrides, varying, metric, goal)
    out = Path(out_dir) if out_dir is not None else root
    results.files["csv"] = write_csv(results, out / "results.csv")
    results.files["markdown"] = write_markdown(results, out / "results.md")
    if results.metric is not None:
        results.files["plot"] = plot_metric(results, out / f"results_{_safe(results.metric)}.png")
    return results


def default_goal(metric: str | None) -> str:
    """``min`` or ``max``: the registered explanation metric's direction for one of its scores (or
    chance rows), else ``min`` for names with a :data:`LOWER_IS_BETTER_WORDS` word."""
    if metric is None:
        return "max"
    direction = score_direction(metric)
    if direction is not None:
        return "min" if direction == "lower" else "max"
    return "min" if any(word in metric.lower() for word in LOWER_IS_BETTER_WORDS) else "max"


def find_jobs(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) with a summary.json or a .hydra/overrides.yaml, in job order."""
    found = {p.parent for p in root.rglob("summary.json")}
    found |= {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    return sorted(found, key=lambda p: _natural(p.relative_to(root).as_posix()))


def read_job(job: Path, root: Path) -> tuple[dict[str, Value], list[str]]:
    """One table row (folder, status, overrides, summary scalars, error) and the job's override keys."""
    row: dict[str, Any] = {"job": job.relative_to(root).as_posix() or "."}
    try:
        overrides = read_overrides(job)
        summary = _read_json(job / "summary.json")
        scores = explanation_scores(job / "explanations.json")
    except UnreadableJobError as err:  # one bad job is reported, the others still tabulated
        return {**row, "status": "unreadable", "error": str(err)}, []
    if summary is None:
        row["status"] = "missing"
        row["error"] = "no summary.json (still running, or the process was killed)"
    else:
        row["status"] = str(summary.get("status", "ok"))
        row["error"] = summary.get("error")
    row.update(overrides)
    for key, value in (summary or {}).items():
        if key in ("status", "error") or not _is_scalar(value):
            continue
        row[f"summary.{key}" if key in overrides else key] = value
    row.update(scores)
    return row, list(overrides)


def read_overrides(job: Path) -> dict[str, str]:
    """The job's command-line overrides as key -> value text (``~key`` deletions as ``<deleted>``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    try:
        lines = yaml.safe_load(path.read_text()) or []
        parsed = OverridesParser.create().parse_overrides([str(line) for line in lines])
    except (yaml.YAMLError, OverrideParseException, UnicodeDecodeError) as err:
        raise UnreadableJobError(f"{path} is not a list of Hydra overrides: {str(err).splitlines()[0]}") from None
    return {
        o.key_or_group: "<deleted>" if o.is_delete() and o.value() is None else o.get_value_element_as_str()
        for o in parsed
    }


def explanation_scores(path: Path) -> dict[str, Value]:
    """Per-pair means of explanations.json (both images of every pair); empty when there is no file."""
    record = _read_json(path)
    if not record:
        return {}
    pairs = record.get("pairs") or []
    sides = [p[k] for p in pairs for k in ("image_1", "image_2") if isinstance(p.get(k), dict)]
    scores: dict[str, Value] = {"explain_pairs": len(pairs)}
    for name in PAIR_SCORES:
        values = [s[name] for s in sides if isinstance(s.get(name), (int, float))]
        if values:
            scores[f"explain_mean_{name}"] = float(np.mean(values))
    return scores


def choose_metric(rows: list[dict[str, Value]], metric: str | None, jobs: list[Path]) -> str | None:
    """``metric`` if given (it must be a numeric column), else the runs' optimized_metric, else a default."""
    numeric = sorted({k for row in rows for k, v in row.items() if _is_number(v)})
    if metric is not None:
        if metric not in numeric:
            raise UserError(f"no job has a numeric {metric!r}; numeric columns: {', '.join(numeric) or 'none'}")
        return metric
    for job in jobs:
        config = job / ".hydra" / "config.yaml"
        named = yaml.safe_load(config.read_text()).get("optimized_metric") if config.is_file() else None
        if named in numeric:
            return str(named)
    return next((m for m in DEFAULT_METRICS if m in numeric), None)


def write_csv(results: Results, path: Path) -> Path:
    """All columns, one row per job, atomically."""
    columns = results.columns
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in results.rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return path


def write_markdown(results: Results, path: Path) -> Path:
    """A readable table: the overrides that vary, the chosen metric first, the numeric columns, the error."""
    common = [f"`{k}={results.rows[0].get(k)}`" for k in results.overrides if k not in results.varying]
    numeric = [
        c
        for c in results.columns
        if any(_is_number(row.get(c)) for row in results.rows) and c not in results.overrides and c != results.metric
    ]
    columns = ["job", "status", *results.varying, *([results.metric] if results.metric else []), *numeric, "error"]
    failed = sum(row["status"] != "ok" for row in results.rows)
    lines = [
        f"# Results of {results.root}",
        "",
        f"{len(results.rows)} jobs, {failed} not ok." + (f" Metric: `{results.metric}`." if results.metric else ""),
        "",
    ]
    best = best_row(results)
    if best is not None:
        note = best_note(results)
        lines += [f"Best ({results.goal} {results.metric}): {setting_label(best, results.varying)}{note}", ""]
    if common:
        lines += [f"Common overrides: {' '.join(common)}", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in results.rows]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def metric_ci(results: Results, row: dict[str, Value]) -> tuple[float, float] | None:
    """The 95% CI of the metric that the job's summary.json holds (``<metric>_ci``), if any."""
    summary = results.root / str(row["job"]) / "summary.json"
    try:
        ci = json.loads(summary.read_text()).get(f"{results.metric}_ci") if summary.is_file() else None
    except (OSError, ValueError):
        return None
    if isinstance(ci, list) and len(ci) == 2 and all(_is_number(v) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


def judge_best(results: Results) -> dict[str, Any]:
    """The best job and what it cannot be told apart from: ``best`` (row or None), ``ties`` (other
    jobs with the same value, or whose 95% CI overlaps the best one's), ``chance`` (the mean random-map
    chance level of the metric, ``chance_random_<metric>`` of the summaries; None without one) and
    ``at_chance`` (the best value is no better than it, or its CI holds it)."""
    best = best_row(results)
    out: dict[str, Any] = {"best": best, "ties": [], "chance": None, "at_chance": False}
    if best is None:
        return out
    metric = str(results.metric)
    value, ci = float(best[metric]), metric_ci(results, best)  # type: ignore[arg-type]
    for row in results.rows:
        if row is best or not _is_number(row.get(metric)):
            continue
        other, other_ci = float(row[metric]), metric_ci(results, row)  # type: ignore[arg-type]
        if other == value or (ci and other_ci and ci[0] <= other_ci[1] and other_ci[0] <= ci[1]):
            out["ties"].append(row)
    chances = [float(v) for row in results.rows if _is_number(v := row.get(f"chance_random_{metric}"))]
    if chances:
        chance = float(np.mean(chances))
        beaten = value > chance if results.goal == "max" else value < chance
        out.update(chance=chance, at_chance=not beaten or bool(ci and ci[0] <= chance <= ci[1]))
    return out


def best_note(results: Results) -> str:
    """What the best pick rests on: "; TIED with ..." and/or "; AT CHANCE ..." ("" when clear)."""
    j = judge_best(results)
    note = ""
    if j["ties"]:
        note += f"; TIED: not distinguishable from {len(j['ties'])} other job(s) (same value or overlapping 95% CIs)"
    if j["at_chance"]:
        note += f"; AT CHANCE: not above the random map's {results.metric} ({j['chance']:.4g})"
    return note


def plot_metric(results: Results, path: Path) -> Path:
    """Horizontal bars of the metric per job (labelled by the varying overrides); best in orange, jobs
    tied with it marked, the random-map chance level dashed, failed jobs marked; the title says
    when the best is tied or at chance (:func:`judge_best`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = results.metric
    if metric is None:
        raise ValueError("plot_metric needs results with a metric")
    labels = [setting_label(row, results.varying) for row in results.rows]
    values = [float(v) if _is_number(v := row.get(metric)) else math.nan for row in results.rows]
    fig = Figure(figsize=(8, 1.5 + 0.4 * len(labels)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(labels))
    finite = [v for v in values if math.isfinite(v)]
    j = judge_best(results)
    tied = {id(r) for r in j["ties"]}
    colors = ["tab:orange" if row is j["best"] else "tab:blue" for row in results.rows]
    ax.barh(y, [v if math.isfinite(v) else 0.0 for v in values], color=colors)
    for i, (row, value) in enumerate(zip(results.rows, values)):
        if math.isfinite(value):
            ax.text(
                value, i, f" {value:.4g}" + (" (tie with best)" if id(row) in tied else ""), va="center", fontsize=8
            )
        else:
            ax.text(0, i, f" {row['status']}", va="center", color="tab:red", fontsize=8)
    if j["chance"] is not None:
        ax.axvline(j["chance"], color="k", ls="--", lw=0.9, label=f"chance: random map ({j['chance']:.4g})")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    note = best_note(results).removeprefix("; ").replace("; ", "\n")
    ax.set_title(
        f"{metric} per setting ({results.root.name}; orange: best, {results.goal}imum)" + (f"\n{note}" if note else ""),
        fontsize=9,
    )
    if finite:
        top = max(finite + ([j["chance"]] if j["chance"] is not None else []))
        ax.set_xlim(0, top * 1.15 if top > 0 else 1)
    return save_figure(fig, path)


def best_row(results: Results) -> dict[str, Value] | None:
    """The job with the best finite value of the metric (first of ties); None when no job has one."""
    metric = results.metric
    scored = [row for row in results.rows if _is_number(row.get(metric))] if metric else []
    if not metric or not scored:
        return None
    pick = max if results.goal == "max" else min
    return pick(scored, key=lambda row: float(row[metric]))  # type: ignore[arg-type]


def setting_label(row: dict[str, Value], keys: list[str]) -> str:
    """``job: key=value ...`` over the overrides that vary across the multirun."""
    settings = " ".join(f"{k}={row.get(k)}" for k in keys if row.get(k) is not None)
    return f"{row['job']}: {settings}" if settings else str(row["job"])


class UnreadableJobError(UserError):
    """A job's summary.json, explanations.json or overrides.yaml cannot be read."""


def _first(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bytes that are not UTF-8
        raise UnreadableJobError(f"{path} is not readable JSON ({_first(err)}); delete it or rerun that job") from None
    if not isinstance(data, dict):
        raise UnreadableJobError(
            f"{path} holds a {type(data).__name__}, not a JSON object; delete it or rerun that job"
        )
    return data


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _text(value).replace("|", "\\|").replace("\n", " ")


def _natural(text: str) -> list[Any]:
    """Sort key in which digit runs compare as numbers (job 10 after job 9)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
