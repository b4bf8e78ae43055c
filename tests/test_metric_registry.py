"""The metric registry: what is derived from it, the config's defaults, and a metric plug-in end to end."""

from __future__ import annotations

import json
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml

from scout_exp.metrics import BatchContext, build_metrics, metric_names, score_batch
from scout_exp.metrics.catalogue import chance_labels, is_score, metric_classes, score_direction
from scout_exp.sweeps.__main__ import main as sweeps_main
from scout_exp.sweeps.collect import default_goal
from tests.conftest import ROOT, TINY, run_dir, run_entry
from tests.test_metrics_core import _scores

DATA = tuple(o for o in TINY if o.startswith("data.") and "batch_size" not in o)


def test_builtin_metrics_declare_themselves() -> None:
    assert metric_names() == ["deletion", "insertion", "interventions", "parts", "randomisation", "road"]
    needs = {cls.name: set(cls.needs) for cls in metric_classes()}
    assert needs["parts"] == {"parts"} and needs["interventions"] == {"parts", "interventions"}
    assert needs["randomisation"] == {"model"} and needs["deletion"] == set()
    assert chance_labels("precision") == {"random": "random map", "face": "whole face", "centre": "centre prior"}


def test_directions_come_from_the_metrics() -> None:
    """The leaderboard and collect rank deletion and ROAD AUCs (and their chance rows) lower-is-better."""
    for key in ("deletion_auc", "road_auc", "chance_random_deletion_auc", "randomisation_spearman_layer4"):
        assert score_direction(key) == "lower" and default_goal(key) == "min", key
    for key in ("precision", "chance_centre_recall", "insertion_auc", "top_part_hit"):
        assert score_direction(key) == "higher" and default_goal(key) == "max", key
    assert default_goal("val_loss") == "min" and default_goal("val_acc") == "max"  # training metrics: the word rule
    assert is_score("chance_face_precision") and not is_score("class") and not is_score("deletion_curve")
    assert score_direction("mine", {"mine": "lower"}) == "lower"  # a run's recorded directions (plug-ins)


def test_config_metric_options_are_the_dataclass_defaults() -> None:
    """``configs/explain.yaml``'s ``metric_options`` repeat the defaults of the metrics that read them."""
    options = yaml.safe_load((ROOT / "configs" / "explain.yaml").read_text())["metric_options"]
    defaults = {f.name: f.default for cls in metric_classes() for f in fields(cls.Options)}
    assert set(options) <= set(defaults), set(options) - set(defaults)
    for key, value in options.items():
        want = defaults[key]
        assert (list(want) if isinstance(want, tuple) else want) == value, key
    assert build_metrics(metric_names(), options)  # every metric takes the config's options


def test_metrics_do_not_depend_on_their_order() -> None:
    """Shared results (chance maps, PR curves, the images' scores) are the same whichever metric asks first."""
    maps = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(5))
    names = ["parts", "interventions", "deletion", "insertion", "road"]
    together = _scores(maps, names)
    reverse = _scores(maps, names[::-1])
    alone = [_scores(maps, [n]) for n in names]
    for i in range(2):
        assert together[i] == reverse[i] == {k: v for a in alone for k, v in a[i].items()}


def test_score_batch_refuses_a_metric_without_its_inputs() -> None:
    with pytest.raises(ValueError, match="needs part_maps"):
        score_batch(build_metrics(["parts"], {}), BatchContext(images=torch.rand(1, 3, 8, 8), maps=torch.rand(1, 2, 2)))


PLUGIN = '''
"""A throwaway curve metric: the share of the map's positive mass in its top fractions."""

from dataclasses import dataclass

import torch

from scout_exp.errors import UserError
from scout_exp.metrics import Curve, MetricOptions, register_metric
from scout_exp.metrics.curves import CurveMetric


@register_metric
class MyMetric(CurveMetric):
    name = "my_metric"
    scores = {"my_metric_auc": "lower"}
    chance = {"random": "random map"}
    figure = Curve("mine: {value:.2f} (random map {chance:.2f})")

    @dataclass(frozen=True)
    class Options(MetricOptions):
        my_stages: int = 4
        seed: int = 0

        def check(self) -> None:
            if self.my_stages < 2:
                raise UserError(f"metric_options.my_stages must be >= 2, got {self.my_stages}")

    def score(self, ctx):
        stages = self.options.my_stages

        def curve(maps):
            flat = maps.flatten(1).clamp(min=0).sort(1, descending=True).values
            mass = flat.cumsum(1) / flat.sum(1, keepdim=True).clamp(min=1e-12)
            at = torch.linspace(0, flat.shape[1] - 1, stages).round().long()
            c = mass[:, at]
            return c, c.mean(1)

        chance = {"random": curve(ctx.chance_maps(4, self.options.seed)[0])}
        return self.curve_records(*curve(ctx.maps), chance)
'''


@pytest.mark.slow
def test_metric_plugin_end_to_end(tmp_path: Path) -> None:
    """One file registers a metric: explain.py scores it with its chance row and CI, draws its curve,
    checks its option, and the leaderboard ranks it in its declared direction."""
    plugin = tmp_path / "my_metric.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    trained = run_entry("train.py", *TINY, "logger=none", cwd=log_dir)
    assert trained.returncode == 0, trained.stderr[-3000:]
    common = (*DATA, "max_pairs=3", "logger=none", f"plugins=[{plugin}]", "attribution.layer=layer2")
    ckpt = next(log_dir.glob("train/runs/*/checkpoints/last.ckpt"))
    (tmp_path / "bad").mkdir()
    bad = run_entry(
        "explain.py",
        *common,
        f"ckpt_path={ckpt}",
        "metrics=[my_metric]",
        "+metric_options.my_stages=1",
        cwd=tmp_path / "bad",
    )
    assert bad.returncode == 2 and "metric_options.my_stages must be >= 2" in bad.stderr.splitlines()[-1]
    result = run_entry(
        "explain.py", *common, "metrics=[my_metric,deletion]", "+metric_options.my_stages=5", cwd=log_dir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = run_dir(log_dir, "explain")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metrics"] == ["my_metric", "deletion"]
    assert summary["score_directions"]["my_metric_auc"] == "lower"
    for key in ("my_metric_auc", "chance_random_my_metric_auc"):
        lo, hi = summary[f"{key}_ci"]
        assert summary[f"{key}_n"] == 6 and lo <= summary[key] <= hi, key
    item = json.loads((run / "explanations.json").read_text())["pairs"][0]["image_1"]
    assert len(item["my_metric_curve"]) == 5 and len(item["my_metric_random_curve"]) == 5
    assert (run / "figures" / "perturbation_curves.png").stat().st_size > 1000
    assert sweeps_main(["leaderboard", str(log_dir / "explain" / "runs"), "--metric", "my_metric_auc"]) == 0
    md = (log_dir / "explain" / "runs" / "leaderboard.md").read_text()
    assert "Sorted by my_metric_auc (lower is better)" in md and "*chance: random map (layer2)*" in md
