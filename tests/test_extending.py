"""README "Extending": a backbone, a gradient method and a confidence head from a user's own files.

The plug-in module and its configs live outside the repository, as a researcher's would: the
module is loaded with ``plugins=[<file>.py]`` and the configs with Hydra's own
``hydra.searchpath=[file://<dir>]``, then trained and explained through the entry points.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import TINY, run_dir, run_entry

pytestmark = pytest.mark.slow

PLUGIN = '''
"""A researcher's plug-ins: a backbone, a gradient method and a confidence head."""

from torch import nn

from scout_exp.attribution import BaseAttribution, register_attribution
from scout_exp.data.transforms import InputSpec
from scout_exp.heads import ConfidenceHead, register_head
from scout_exp.models import register_model


class TinyNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(-2, -1)))


@register_model(input_spec=InputSpec(size=24, mean=(0.5,) * 3, std=(0.25,) * 3), target_layer="features")
def tiny_net(num_classes):
    return TinyNet(num_classes)


@register_attribution("grad_norm")
class GradNorm(BaseAttribution):
    """|dq/df|^power summed over channels."""

    def __init__(self, model, target_layer=None, power: float = 2.0):
        super().__init__(model, target_layer)
        self.power = power

    def combine(self, activations, gradients):
        return gradients.abs().pow(self.power).sum(dim=2)


@register_head
class TopLogitHead(ConfidenceHead):
    name = "top_logit"

    def score(self, out):
        return self.logits(out).max(dim=-1).values
'''

CONFIGS = {
    "model/tiny_net.yaml": """
        name: tiny_net
        kwargs: {}
        target_layer: null
        input: {size: null, channel_order: null, mean: null, std: null, pixel_scale: null}
        init_from: null
    """,
    "attribution/grad_norm.yaml": """
        method: grad_norm
        layer: null
        kwargs:
          power: 2.0
    """,
    "head/top_logit.yaml": "name: top_logit\n",
}
DATA = tuple(o for o in TINY if o.startswith("data.") and "batch_size" not in o)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """The overrides that load the plug-in module and its configs from a temporary folder."""
    root = tmp_path_factory.mktemp("my_lab")
    (root / "my_lab.py").write_text(PLUGIN)
    for name, text in CONFIGS.items():
        (root / "configs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "configs" / name).write_text(textwrap.dedent(text))
    return (f"plugins=[{root / 'my_lab.py'}]", f"hydra.searchpath=[file://{root / 'configs'}]")


@pytest.fixture(scope="module")
def trained(lab: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory) -> Path:
    log_dir = tmp_path_factory.mktemp("logs")
    tiny = [o for o in TINY if not o.startswith("model.")]
    result = run_entry("train.py", *lab, "model=tiny_net", *tiny, "logger=none", cwd=log_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return log_dir


def test_plugin_backbone_method_and_head_through_explain(lab: tuple[str, ...], trained: Path) -> None:
    trained_summary = json.loads((run_dir(trained) / "summary.json").read_text())
    assert trained_summary["model"] == "tiny_net" and trained_summary["status"] == "ok"
    ckpt = next(trained.glob("train/runs/*/checkpoints/last.ckpt"))
    overrides = (*lab, *DATA, f"ckpt_path={ckpt}", "split=val", "max_pairs=2", "logger=none", "save_maps=true")
    result = run_entry(
        "explain.py",
        *overrides,
        "attribution=grad_norm",
        "attribution.kwargs.power=1",
        "head=top_logit",
        "metrics=[parts,deletion]",
        cwd=trained,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir(trained, "explain") / "explanations.json").read_text())
    summary = record["summary"]
    assert (summary["attribution"], summary["confidence"], summary["layer"]) == ("grad_norm", "top_logit", "features")
    assert summary["pairs"] == 2 and "deletion_auc" in summary and "chance_random_deletion_auc" in summary
    assert all(pair["image_1"]["confidence"] is not None for pair in record["pairs"])
    assert len(list((run_dir(trained, "explain") / "maps").glob("*.npz"))) == 2


def test_a_plugin_option_that_does_not_exist_is_one_line(lab: tuple[str, ...], trained: Path, tmp_path: Path) -> None:
    ckpt = next(trained.glob("train/runs/*/checkpoints/last.ckpt"))
    result = run_entry(
        "explain.py",
        *lab,
        *DATA,
        f"ckpt_path={ckpt}",
        "split=val",
        "max_pairs=1",
        "attribution=grad_norm",
        "+attribution.kwargs.gamma=3",
        "logger=none",
        cwd=tmp_path,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (
        lines[-1]
        == "error: attribution grad_norm has no option gamma; its options (attribution.kwargs.<option>): power"
    )
