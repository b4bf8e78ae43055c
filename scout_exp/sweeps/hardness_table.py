"""``python -m scout_exp.sweeps.hardness_table DIR``: error-detection table over the seeds of a multirun.

Reads every finished job's ``summary.json`` under ``DIR`` (a ``train.py -m ... seed=0,1,2`` folder
of hardness runs) and writes ``hardness_table.md`` and ``hardness_table.csv`` beside them: per
confidence score, the mean and standard deviation over the runs of AUROC (errors against correct
predictions; higher is better), AURC and FPR at 95% TPR (lower is better), the mean of the runs'
95% bootstrap interval bounds, and each score's paired difference to the softmax response.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from scout_exp.errors import UserError
from scout_exp.hardness.metrics import MEASURES
from scout_exp.io import atomic_path
from scout_exp.sweeps.collect import find_jobs

REFERENCE = "softmax"


def read_runs(root: Path) -> list[dict[str, Any]]:
    """The summaries of the finished (status ok) jobs under ``root`` that report error-detection scores."""
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass a multirun folder such as outputs/train/multiruns/<time>")
    runs = []
    for job in find_jobs(root):
        path = job / "summary.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text() or "{}")
        if summary.get("status", "ok") == "ok" and any(k.startswith("auroc_") for k in summary):
            runs.append(summary)
    if not runs:
        raise UserError(f"no finished hardness run under {root}: no summary.json with auroc_<score> entries")
    return runs


def scores_of(runs: list[dict[str, Any]]) -> list[str]:
    """Score names reported by every run, in the first run's order."""
    names = [k[len("auroc_") :] for k in runs[0] if k.startswith("auroc_") and not k.endswith("_ci")]
    return [n for n in names if all(f"auroc_{n}" in run for run in runs)]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per score: ``<measure>_mean``, ``_sd`` (ddof 1; 0 for one run), ``_ci_low``/``_ci_high`` and ``_vs_softmax``.

    ``_vs_softmax`` is the mean over runs of the score's value minus the softmax response's, with
    its sd in ``_vs_softmax_sd``; a value missing from a run (no errors) is left out of that run.
    """
    rows = []
    for score in scores_of(runs):
        row: dict[str, Any] = {"score": score, "runs": len(runs)}
        for measure in MEASURES:
            values = _values(runs, f"{measure}_{score}")
            row[f"{measure}_mean"], row[f"{measure}_sd"] = _mean_sd(values)
            reported = [run.get(f"{measure}_{score}_ci") for run in runs]
            intervals = np.array([ci for ci in reported if ci is not None], dtype=np.float64).reshape(-1, 2)
            row[f"{measure}_ci_low"], row[f"{measure}_ci_high"] = (
                (float(intervals[:, 0].mean()), float(intervals[:, 1].mean())) if len(intervals) else (None, None)
            )
            reference = _values(runs, f"{measure}_{REFERENCE}")
            paired = values - reference if len(values) == len(reference) == len(runs) else np.array([])
            row[f"{measure}_vs_softmax"], row[f"{measure}_vs_softmax_sd"] = _mean_sd(paired)
        rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], runs: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    """Write ``hardness_table.csv`` (every field) and ``hardness_table.md`` (mean ± sd [CI]) into ``out``."""
    csv_path, md_path = out / "hardness_table.csv", out / "hardness_table.md"
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    first = runs[0]
    errors = [run.get("confidence_errors") for run in runs]
    lines = [
        f"Error detection on the {first.get('confidence_split', 'val')} split over {len(runs)} runs "
        f"({first.get('confidence_samples')} samples; errors per run: {', '.join(str(e) for e in errors)}); "
        "mean ± sd over runs [mean of the runs' 95% bootstrap CIs]; Δ: paired difference to the softmax response.",
        "",
        "| score | AUROC ↑ | Δ AUROC | AURC ↓ | Δ AURC | FPR@95%TPR ↓ | Δ FPR@95 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [row["score"]]
        for measure in MEASURES:
            cells.append(_cell(row, measure))
            cells.append(_pm(row[f"{measure}_vs_softmax"], row[f"{measure}_vs_softmax_sd"], signed=True))
        lines.append("| " + " | ".join(cells) + " |")
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def _values(runs: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([run[key] for run in runs if run.get(key) is not None], dtype=np.float64)


def _mean_sd(values: np.ndarray) -> tuple[float | None, float | None]:
    if not len(values):
        return None, None
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _pm(mean: float | None, sd: float | None, signed: bool = False) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:+.4f} ± {sd:.4f}" if signed else f"{mean:.4f} ± {sd:.4f}"


def _cell(row: dict[str, Any], measure: str) -> str:
    text = _pm(row[f"{measure}_mean"], row[f"{measure}_sd"])
    low, high = row[f"{measure}_ci_low"], row[f"{measure}_ci_high"]
    return text if low is None else f"{text} [{low:.3f}, {high:.3f}]"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, write the table, print the Markdown; a user error is one line and status 2."""
    parser = argparse.ArgumentParser(prog="python -m scout_exp.sweeps.hardness_table", description=__doc__)
    parser.add_argument("dir", help="a multirun folder of hardness runs, e.g. outputs/train/multiruns/<time>")
    parser.add_argument("--out", default=None, help="folder for hardness_table.csv/.md (default: DIR)")
    args = parser.parse_args(argv)
    try:
        runs = read_runs(Path(args.dir))
        _, md_path = write_table(summarise(runs), runs, Path(args.out or args.dir))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(md_path.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
