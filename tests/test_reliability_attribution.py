"""Every attribution option through the real command line and the API, in every autograd state.

Third-party methods (pytorch-grad-cam, Captum) must turn gradients back on inside the predict
loop, pair their targets with samples (not tuple elements) and cope with bfloat16 models.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from scout_exp.attribution import create_attribution
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.heads.softmax import SoftmaxHead
from tests.conftest import run_entry
from tests.reliability_helpers import face_images, tiny_checkpoint

CONFIGS = ("gradcam", "gradcampp", "gradxact", "hirescam", "layercam", "xgradcam", "pytorch_grad_cam", "captum")
#: pytorch-grad-cam with gradients (GradCAM, HiResCAM) and without (EigenCAM); two Captum methods
METHODS = ("pgc:GradCAM", "pgc:HiResCAM", "pgc:EigenCAM", "captum:LayerGradCam", "captum:LayerGradientXActivation")


def _summaries(out: Path) -> dict[str, dict]:
    found = {}
    for path in out.glob("explain/multiruns/*/*/summary.json"):
        summary = json.loads(path.read_text())
        found[summary.get("attribution", path.parent.name)] = summary
    return found


@pytest.mark.slow
def test_every_attribution_config_and_method_through_the_cli(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.ckpt")
    a, b = face_images(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "m").mkdir()
    common = (f"ckpt_path={ckpt}", f"images=[{a},{b}]", "logger=none", "max_figures=0", "attribution.layer=layer3")
    result = run_entry("explain.py", f"attribution={','.join(CONFIGS)}", *common, "-m", cwd=tmp_path / "configs")
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = _summaries(tmp_path / "configs")
    assert len(summaries) == len(CONFIGS), summaries
    assert all(s["status"] == "ok" and s["pairs"] == 1 for s in summaries.values()), summaries
    methods = ",".join(METHODS)
    result = run_entry(
        "explain.py", "attribution=pytorch_grad_cam", f"attribution.method={methods}", *common, "-m", cwd=tmp_path / "m"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = _summaries(tmp_path / "m")
    assert sorted(summaries) == sorted(METHODS), summaries
    assert all(s["status"] == "ok" for s in summaries.values()), summaries


class _Tuple(nn.Module):
    """A recogniser returning ``(logits, embedding)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits, logits[:, :3] * 2.0


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


X = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
IDS = torch.tensor([[0, 1], [2, 3], [4, 0]])


def _targets(out: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    logits = out[0] if isinstance(out, tuple) else out
    return logits.gather(1, IDS.repeat(logits.shape[0] // IDS.shape[0], 1))


@pytest.mark.parametrize("method", ["pgc:GradCAM", "pgc:EigenCAM", "captum:LayerGradCam"])
def test_adapters_under_no_grad_inference_mode_tuples_and_bf16(net: nn.Module, method: str) -> None:
    reference = create_attribution(method, net, "layer3")(X, _targets)
    assert reference.abs().amax() > 0
    for state in (torch.no_grad, torch.inference_mode):
        with state():
            maps = create_attribution(method, net, "layer3")(X, _targets)
        torch.testing.assert_close(maps, reference)
    # a tuple output: every sample's map as with the plain logits (not paired with tuple elements)
    maps = create_attribution(method, _Tuple(net), "net.layer3")(X, _targets)
    torch.testing.assert_close(maps, reference)
    low = copy.deepcopy(net).to(torch.bfloat16)
    maps = create_attribution(method, low, "layer3")(X.to(torch.bfloat16), _targets).float()
    for b in range(X.shape[0]):
        corr = torch.corrcoef(torch.stack([maps[b].flatten(), reference[b].flatten()]))[0, 1]
        assert corr > 0.9, (method, b, corr)


class _TupleSoftmax(SoftmaxHead):
    """The softmax head of a model whose output is ``(logits, embedding)``."""

    name = "tuple_softmax"

    def logits(self, out: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return out[0]


def test_scout_explainer_with_pgc_and_tuple_head_inside_inference_mode(net: nn.Module) -> None:
    plain = ScoutExplainer(net, attribution="pgc:GradCAM", target_layer="layer3").explain(X, 0, 1)
    with torch.inference_mode():
        wrapped = ScoutExplainer(
            _Tuple(net), attribution="pgc:GradCAM", target_layer="net.layer3", head=_TupleSoftmax()
        ).explain(X, 0, 1)
    torch.testing.assert_close(wrapped.class_map, plain.class_map)
    torch.testing.assert_close(wrapped.counter_map, plain.counter_map)
