"""explain.py end to end on FaceParts: figure, explanations.json, W&B record, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scout_exp.data.faceparts import FaceParts
from scout_exp.io import save_image
from scout_exp.wandb_offline import read_offline_run
from tests.conftest import TINY, run_dir, run_entry

pytestmark = pytest.mark.slow
DATA = tuple(o for o in TINY if o.startswith("data.") and "batch_size" not in o)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log dir holding one tiny FaceParts training run."""
    log_dir = tmp_path_factory.mktemp("logs")
    result = run_entry("train.py", *TINY, "logger=none", cwd=log_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return log_dir


def test_default_run_finds_checkpoint_and_scores_parts(trained: Path) -> None:
    result = run_entry("explain.py", *DATA, "max_pairs=3", "logger=wandb", "save_maps=true", cwd=trained)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "explain (scout): 100% (1/1 batches)" in result.stdout  # progress as log lines when piped
    run = run_dir(trained, "explain")
    assert json.loads((run / "manifest.json").read_text())["stages"]["explain"]["seconds"] > 0
    record = json.loads((run / "explanations.json").read_text())
    summary = record["summary"]
    assert summary["pairs"] == 3 and summary["attribution"] == "gradxact"
    assert summary["recall"] is None or 0.0 <= summary["recall"] <= 1.0  # None: every tiny map was degenerate
    pair = record["pairs"][0]
    assert 1 <= len(pair["discriminative_parts"]) == pair["k"] <= 3  # look-alikes: k parts apart
    for side in ("image_1", "image_2"):
        assert pair[side]["class"] != pair[side]["counter_class"]
        assert pair[side]["segment_area_px"] == round(0.1 * 32 * 32)
    assert (run / pair["figure"]).stat().st_size > 5000
    assert (run / pair["maps"]).is_file()
    assert (run / "figures" / "pr_curve.png").is_file()
    assert len(record["pr_curve"]["precision"]) == 100
    (offline,) = (run / "wandb").glob("offline-run-*")
    logged = read_offline_run(offline)
    assert logged["summary"]["pairs"] == 3
    assert logged["summary"]["explanations/count"] == 3
    assert logged["summary"]["report/_type"] == "html-file"  # report.html, mirrored as W&B HTML media
    assert logged["config"]["manifest"]["stages"]["explain"]["seconds"] > 0


def test_two_images_with_default_classes(trained: Path, tmp_path: Path) -> None:
    fp = FaceParts(num_identities=4, images_per_identity=12, image_size=96)
    paths = [save_image(fp.render(i).image, tmp_path / f"face{i}.png") for i in (0, 1)]
    ckpt = next(trained.glob("train/runs/*/checkpoints/last.ckpt"))
    out = tmp_path / "logs"
    result = run_entry(
        "explain.py",
        f"images=[{paths[0]},{paths[1]}]",
        f"ckpt_path={ckpt}",
        "attribution=gradcampp",
        "logger=none",
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(next(out.parent.glob("explain/runs/*/explanations.json")).read_text())
    pair = record["pairs"][0]
    assert pair["image_1"]["class"] == pair["image_2"]["counter_class"]
    assert pair["image_1"]["counter_class"] == pair["image_2"]["class"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("images=[/no/such/face.png]", "does not exist"),
        ("attribution.layer=layer9", "layer9"),
        ("classes=[0,99]", "99"),
        ("classes=[1,1]", "must differ"),
        ("segment.area_fraction=10", "10% is 0.1"),
    ],
)
def test_bad_input_is_one_line(trained: Path, tmp_path: Path, override: str, expected: str) -> None:
    fp = FaceParts(num_identities=4, images_per_identity=12, image_size=96)
    face = save_image(fp.render(0).image, tmp_path / "face.png")
    ckpt = next(trained.glob("train/runs/*/checkpoints/last.ckpt"))
    overrides = [override] if override.startswith("images") else [f"images=[{face},{face}]", override]
    result = run_entry("explain.py", *overrides, f"ckpt_path={ckpt}", "logger=none", cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("error:") and expected in lines[-1], lines[-1]


@pytest.mark.parametrize("trunk", ["separate", "shared"])
def test_hardness_head_end_to_end(tmp_path: Path, trunk: str) -> None:
    """train.py head=hardness, then explain.py head=hardness uses s^e = 1 - s^hp as the confidence."""
    train = run_entry("train.py", *TINY, "head=hardness", f"objective.trunk={trunk}", "logger=none", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads(run_dir(tmp_path).joinpath("summary.json").read_text())
    for score in ("softmax", "certainty", "easiness"):
        assert f"auroc_{score}" in summary and f"aurc_{score}" in summary
    assert (run_dir(tmp_path) / "figures" / "risk_coverage.png").is_file()
    result = run_entry("explain.py", *DATA, "head=hardness", "max_pairs=2", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(next(tmp_path.glob("explain/runs/*/explanations.json")).read_text())
    assert record["summary"]["confidence"] == "hardness"
    confidence = record["pairs"][0]["image_1"]["confidence"]
    assert 0.0 <= confidence <= 1.0


def test_pairs_csv_tolerates_spaces_and_bom(tmp_path: Path) -> None:
    from scout_exp.explain.pairs import pairs_from_csv

    fp = FaceParts(num_identities=4, images_per_identity=12, image_size=96)
    for i in (0, 1):
        save_image(fp.render(i).image, tmp_path / f"f{i}.png")
    (tmp_path / "pairs.csv").write_text("\ufeffimage_1, image_2, class_1, class_2\nf0.png, f1.png, 0, 1\n")
    (pair,) = pairs_from_csv(tmp_path / "pairs.csv")
    assert pair.image_2 == str(tmp_path / "f1.png") and (pair.class_1, pair.class_2) == (0, 1)


def test_explain_skips_failed_training_runs(trained: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from scout_exp.cli import check_overrides
    from scout_exp.tasks.train_on_demand import newest_checkpoint

    cfg = check_overrides("explain", list(DATA))
    good = next(trained.glob("train/runs/*"))
    assert newest_checkpoint(trained / "train", cfg) == good / "checkpoints" / "last.ckpt"
    crashed = tmp_path / "train" / "runs" / "crashed"
    (crashed / "checkpoints").mkdir(parents=True)
    (crashed / "checkpoints" / "last.ckpt").write_bytes(b"half-trained")
    (crashed / "config_resolved.yaml").write_text(OmegaConf.to_yaml(OmegaConf.load(good / "config_resolved.yaml")))
    (crashed / "summary.json").write_text('{"status": "failed", "error": "interrupted"}')
    assert newest_checkpoint(tmp_path / "train", cfg) is None


@pytest.mark.slow
def test_without_a_checkpoint_explain_trains_one_in_process(tmp_path: Path) -> None:
    """No FaceParts run under the log dir: explain.py runs the train task in its own process, then explains."""
    tiny = ("model.input.size=32", "trainer.max_epochs=1", "data.batch_size=8", "head=margin")
    result = run_entry("explain.py", *DATA, *tiny, "max_pairs=2", "logger=none", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads(next((tmp_path / "train" / "runs").glob("*/summary.json")).read_text())
    assert trained["status"] == "ok" and trained["objective"] == "ce" and trained["head"] == "margin"
    summary = json.loads((run_dir(tmp_path, "explain") / "summary.json").read_text())
    assert summary["pairs"] == 2 and summary["confidence"] == "margin"
    assert summary["checkpoint"].endswith("last.ckpt")
