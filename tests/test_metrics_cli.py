"""``python explain.py metrics=[...]``: per-pair scores, CIs and chance rows, figures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scout_exp.data.faceparts import FaceParts
from scout_exp.io import save_image
from tests.conftest import TINY, run_dir, run_entry

DATA = tuple(o for o in TINY if o.startswith("data.") and "batch_size" not in o)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp("logs")
    result = run_entry("train.py", *TINY, "logger=none", cwd=log_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return log_dir


@pytest.mark.slow
def test_all_metrics_end_to_end(trained: Path) -> None:
    result = run_entry(
        "explain.py",
        *DATA,
        "max_pairs=3",
        "logger=none",
        "metrics=[parts,interventions,deletion,insertion,road,randomisation]",
        "metric_options.steps=8",
        "metric_options.road_fractions=[0.25,0.5,0.75]",
        "metric_options.curve_chance=[random,centre]",
        "metric_options.deletion_baseline=mean",
        "metric_options.insertion_baseline=mean",  # same baseline: deletion ends where insertion starts
        "attribution.layer=layer2",  # 4x4 maps at the tiny 32 px input (layer4 is 1x1: constant maps)
        cwd=trained,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_dir(trained, "explain")
    record = json.loads((run / "explanations.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    item = record["pairs"][0]["image_1"]
    assert set(item["part_effects"]) == set(record["pairs"][0]["discriminative_parts"])
    assert len(item["deletion_curve"]) == 9 and item["deletion_auc"] is not None
    assert item["deletion_curve"][-1] == item["insertion_curve"][0] != item["deletion_curve"][0]
    assert len(item["road_curve"]) == 3 and item["road_auc"] == pytest.approx(sum(item["road_curve"]) / 3, rel=1e-5)
    assert any(k.startswith("randomisation_spearman_") for k in item)
    for block in ("fc", "layer4", "layer3", "layer2", "layer1", "bn1", "conv1"):  # the whole cascade is scored
        value = item[f"randomisation_spearman_{block}"]
        assert value is None or -1 <= value <= 1  # None only where the original map is constant
    for key in (
        "chance_face_precision",
        "chance_centre_recall",
        "deletion_auc",
        "insertion_auc",
        "chance_random_deletion_auc",
        "road_auc",
        "chance_random_road_auc",
        "chance_centre_deletion_auc",
        "chance_centre_road_auc",
    ):
        lo, hi = summary[f"{key}_ci"]
        assert summary[f"{key}_n"] == 6 and lo <= summary[key] <= hi, key
    assert summary["precision_n"] <= 6 and summary["randomisation_spearman_conv1_n"] <= 6
    assert summary["metrics"] == ["parts", "interventions", "deletion", "insertion", "road", "randomisation"]
    assert (run / "figures" / "perturbation_curves.png").is_file()
    assert (run / "figures" / "part_effects.png").is_file()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("metrics=[deletion,bogus]", "unknown metric 'bogus'; choose one of: deletion, insertion, interventions"),
        ("metrics=[road] metric_options.road_fractions=[0.5,1.0]", "road_fractions must be a non-empty list of shares"),
        ("metrics=[road] +metric_options.step=4", "unknown metric_options step; choose from:"),
        (
            "metrics=[interventions]",
            "metric 'interventions' needs part annotations and the images=[...] input has none",
        ),
    ],
)
def test_bad_metrics_are_one_line(trained: Path, tmp_path: Path, override: str, expected: str) -> None:
    fp = FaceParts(num_identities=4, images_per_identity=12, image_size=96)
    face = save_image(fp.render(0).image, tmp_path / "face.png")
    ckpt = next(trained.glob("train/runs/*/checkpoints/last.ckpt"))
    result = run_entry(
        "explain.py", f"images=[{face},{face}]", *override.split(), f"ckpt_path={ckpt}", "logger=none", cwd=tmp_path
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("error:") and expected in lines[-1], lines[-1]
