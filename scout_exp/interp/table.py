"""Replication table of interpretable FR: base vs SAD only vs SAD + FAD, next to the paper's d.

``python -m scout_exp.interp.table DIR`` reads every ``summary.json`` under ``DIR`` (a multirun
folder of ``train.py -m experiment=interp_fr objective.variant=base,sad,sad_fad ...``), prints the
Markdown table and writes it to ``DIR/replication.md``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from scout_exp.errors import UserError
from scout_exp.io import atomic_path

PAPER_D = {"base": 6.9, "sad": 17.1, "sad_fad": 18.7}
"""Published spread d of the average peak locations on 96x96 faces (Yin et al., ICCV 2019)."""
LABELS = {"base": "base CNN", "sad": "SAD only", "sad_fad": "SAD + FAD"}
COLUMNS = (
    ("accuracy", "test_acc"),
    ("TAR@FAR=1e-2", "test_tar@far=0.01"),
    ("accuracy occluded", "test_acc_occluded"),
    ("d (ours, 96 px)", "test_peak_spread_d"),
)


def read_summaries(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every ``summary.json`` under ``root`` (sorted by path), each with its ``run_dir`` added."""
    base = Path(root)
    if not base.is_dir():
        raise UserError(f"{base} is not a folder; give the multirun folder of the replication")
    rows = []
    for path in sorted(base.rglob("summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read {path}: {err}") from None
        rows.append({**summary, "run_dir": str(path.parent)})
    if not rows:
        raise UserError(f"no summary.json under {base}; run the replication multirun first")
    return rows


def _cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def render_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown table, one row per run, ordered base, sad, sad_fad; failed runs say so."""
    order = {v: k for k, v in enumerate(PAPER_D)}
    rows = sorted(summaries, key=lambda s: (order.get(_variant(s), len(order)), s["run_dir"]))
    header = ["variant", *(name for name, _ in COLUMNS), "d (paper)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in rows:
        variant = _variant(s)
        name = LABELS.get(variant, variant)
        if s.get("status") != "ok":
            cells = [f"failed: {s.get('error', '?')}"] + [""] * (len(COLUMNS) - 1)
        else:
            cells = [_cell(s.get(key), 1 if key == "test_peak_spread_d" else 3) for _, key in COLUMNS]
        lines.append("| " + " | ".join([name, *cells, _cell(PAPER_D.get(variant), 1)]) + " |")
    return "\n".join(lines) + "\n"


def _variant(summary: dict[str, Any]) -> str:
    """The run's variant: from summary.json, else from its resolved config."""
    if summary.get("variant"):
        return str(summary["variant"])
    config = Path(summary["run_dir"]) / "config_resolved.yaml"
    if config.is_file():
        import yaml

        return str(((yaml.safe_load(config.read_text()) or {}).get("objective") or {}).get("variant", "?"))
    return "?"


def main(argv: list[str] | None = None) -> int:
    """Print the table of the multirun folder ``argv[0]`` and write ``replication.md`` there."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scout_exp.interp.table MULTIRUN_DIR", file=sys.stderr)
        return 2
    try:
        table = render_table(read_summaries(args[0]))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with atomic_path(Path(args[0]) / "replication.md") as tmp:
        tmp.write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
