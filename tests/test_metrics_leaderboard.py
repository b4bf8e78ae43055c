"""``python -m scout_exp.sweeps leaderboard``: ranking with CIs and chance rows from explain summaries."""

from __future__ import annotations

import json
from pathlib import Path

from scout_exp.sweeps.__main__ import main


def _job(root: Path, n: int, variant: str, precision: float, layer: str = "layer4") -> None:
    job = root / str(n)
    job.mkdir(parents=True)
    s = {
        "task": "explain",
        "status": "ok",
        "attribution": "gradxact",
        "variant": variant,
        "confidence": "softmax",
        "layer": layer,
        "pairs": 10,
    }
    for key, v in (
        ("precision", precision),
        ("chance_random_precision", 0.2),
        ("chance_face_precision", 0.18),
        ("chance_centre_precision", 0.25),
        ("deletion_auc", 1.0 - precision),
    ):
        s[key], s[f"{key}_ci"], s[f"{key}_n"] = v, [v - 0.05, v + 0.05], 20
    (job / "summary.json").write_text(json.dumps(s))


def test_leaderboard_sorts_and_adds_chance_rows(tmp_path: Path, capsys) -> None:
    _job(tmp_path, 0, "a", 0.5)
    _job(tmp_path, 1, "a_abar_as", 0.7)
    _job(tmp_path, 2, "a_abar", 0.6, layer="layer3")
    assert main(["leaderboard", str(tmp_path), "--metric", "precision"]) == 0
    md = (tmp_path / "leaderboard.md").read_text().splitlines()
    body = [line for line in md if line.startswith("| ") and "---" not in line][1:]
    names = [line.split(" | ")[0][2:] for line in body]
    assert names[:3] == [
        "gradxact / a_abar_as / softmax / layer4",
        "gradxact / a_abar / softmax / layer3",
        "gradxact / a / softmax / layer4",
    ]
    assert "*chance: centre prior*" in names and "*chance: random map (layer3)*" in names
    assert "0.700 [0.650, 0.750]" in body[0]
    assert (tmp_path / "leaderboard.png").stat().st_size > 1000
    rows = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert rows[0].startswith("setting,pairs,n,precision,precision_ci_low") and len(rows) == 1 + 3 + 4
    assert body[0].split(" | ")[2] == "20"  # images where the metric is defined
    assert main(["leaderboard", str(tmp_path), "--metric", "deletion_auc", "--out", str(tmp_path / "d")]) == 0
    first = (tmp_path / "d" / "leaderboard.md").read_text().splitlines()[4]
    assert "a_abar_as" in first  # lower deletion AUC ranks first


def test_leaderboard_unknown_metric_is_one_line(tmp_path: Path, capsys) -> None:
    _job(tmp_path, 0, "a", 0.5)
    assert main(["leaderboard", str(tmp_path), "--metric", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no explain job") and "precision" in err[0]


def test_leaderboard_of_a_training_sweep_points_to_collect(tmp_path: Path, capsys) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "summary.json").write_text(json.dumps({"task": "train", "status": "ok", "val_acc": 0.5}))
    assert main(["leaderboard", str(tmp_path)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: no finished explain job") and f"scout_exp.sweeps collect {tmp_path}" in err
