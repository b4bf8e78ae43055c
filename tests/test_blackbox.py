"""Black-box attribution: occlusion against Captum, RISE unchanged, one call in SCOUT, CLI and plug-ins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from captum.attr import Occlusion as CaptumOcclusion
from torch import nn

from scout_exp.attribution import attribution_class, create_attribution
from scout_exp.attribution.occlusion import Occlusion
from scout_exp.attribution.rise import RISE, rise_masks
from scout_exp.errors import UserError
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.explain.verification import VerificationExplainer
from scout_exp.heads import ConfidenceHead
from scout_exp.training.margin import MarginEmbedderModule
from scout_exp.training.module import ClassifierModule
from tests.conftest import run_dir, run_entry
from tests.test_verification_margin import FACEPARTS, SPEC, _save


def _tiny(outputs: int = 3) -> nn.Module:
    """conv -> ReLU -> pool -> linear: (B, 3, H, W) -> (B, outputs) scores."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, outputs)
    ).eval()


@pytest.mark.parametrize(
    ("window", "stride", "baseline"),
    [((3, 4), (2, 3), 0.5), (4, 4, 0.0), (5, 3, -1.0)],  # the last rows/columns cut at the border
)
def test_occlusion_matches_captum(
    window: int | tuple[int, int], stride: int | tuple[int, int], baseline: float
) -> None:
    model = _tiny()
    x = torch.randn(2, 3, 10, 12, generator=torch.Generator().manual_seed(1))
    ours = Occlusion(model, window=window, stride=stride, baseline=baseline, batch_size=5)(x, lambda out: out)
    wh, ww = (window, window) if isinstance(window, int) else window
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    captum = CaptumOcclusion(model)
    for t in range(3):
        theirs = captum.attribute(
            x, sliding_window_shapes=(3, wh, ww), strides=(3, sh, sw), baselines=baseline, target=t
        )
        assert torch.equal(theirs[:, 0], theirs[:, 2])  # one value per pixel, for all channels
        torch.testing.assert_close(ours[:, t], theirs[:, 0], atol=1e-5, rtol=0)


def _rise_as_before(score, x: torch.Tensor, masks: torch.Tensor, keep: float, batch_size: int) -> torch.Tensor:
    """The RISE estimator as the verification explainer computed it before the black-box base:
    sample-major chunks of ``batch_size`` masked images, one score per copy."""
    b, n = x.shape[0], masks.shape[0]
    scores = torch.empty(b * n)
    with torch.no_grad():
        for start in range(0, b * n, batch_size):
            k = torch.arange(start, min(start + batch_size, b * n))
            sample, mask = k // n, k % n
            scores[k] = score(x[sample] * masks[mask][:, None], sample).float()
    centred = scores.reshape(b, n) - scores.reshape(b, n).mean(dim=1, keepdim=True)
    return torch.einsum("bn,nhw->bhw", centred, masks) / (n * keep)


def test_rise_maps_unchanged() -> None:
    """RISE as a registered black-box method gives the maps of the code it replaced (1e-6)."""
    model = _tiny(4)
    gen = torch.Generator().manual_seed(2)
    probe, reference = torch.randn(3, 3, 12, 12, generator=gen), torch.randn(3, 3, 12, 12, generator=gen)
    options = {"masks": 37, "grid": 3, "keep": 0.4, "batch_size": 7, "seed": 5}
    e = VerificationExplainer(model, None, "rise", **options).explain(probe, reference)
    x = torch.cat([probe, reference])
    unit = nn.functional.normalize(model(x).detach().double(), dim=1)
    partner = torch.cat([unit[3:], unit[:3]])

    def cosine(masked: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        return (nn.functional.normalize(model(masked).double(), dim=1) * partner[sample]).sum(dim=1)

    masks = rise_masks(37, 3, 0.4, (12, 12), torch.Generator().manual_seed(5))
    before = _rise_as_before(cosine, x, masks, 0.4, 7)
    signed = torch.cat([e.similar[0] - e.different[0], e.similar[1] - e.different[1]])
    torch.testing.assert_close(signed, before, atol=1e-6, rtol=0)
    assert RISE(model).describe() == "RISE (1000 masks, grid 7, keep 0.5)"


def test_scout_gets_three_maps_from_one_black_box_call(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny(5)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    explainer = ScoutExplainer(model, "rise", attribution_options={"masks": 12, "grid": 2, "batch_size": 5})
    calls: list[tuple[int, ...]] = []
    real = RISE.__call__

    def spy(self: RISE, inputs: torch.Tensor, targets):  # noqa: ANN001, ANN202
        maps = real(self, inputs, targets)
        calls.append(tuple(maps.shape))
        return maps

    monkeypatch.setattr(RISE, "__call__", spy)
    exp = explainer.explain(x)
    assert calls == [(2, 3, 8, 8)]  # class, counter-class and confidence maps: T=3, at the input size
    logits = model(x).detach()
    top2 = logits.topk(2, dim=1).indices
    assert torch.equal(exp.y_star, top2[:, 0]) and torch.equal(exp.y_counter, top2[:, 1])
    torch.testing.assert_close(exp.confidence, logits.softmax(1).amax(1))
    alone = RISE(model, masks=12, grid=2, batch_size=5)
    torch.testing.assert_close(exp.confidence_map, real(alone, x, lambda out: out.softmax(1).amax(1))[:, 0])

    def logit_of_y_star(out: torch.Tensor) -> torch.Tensor:  # row r is a copy of sample r mod 2
        return out.gather(1, top2[torch.arange(len(out)) % 2, :1])

    torch.testing.assert_close(exp.class_map, real(alone, x, logit_of_y_star)[:, 0])


class _PredictorHead(ConfidenceHead):
    """A head with a network of its own: s = predictor(x), explained at the predictor's layer."""

    name = "predictor_test"

    def __init__(self, predictor: nn.Module) -> None:
        self.network = predictor

    def score(self, out: torch.Tensor) -> torch.Tensor:
        return out[:, 0]


def test_black_box_with_a_separate_confidence_network() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    predictor = _tiny(1)
    exp = ScoutExplainer(
        _tiny(5), "occlusion", head=_PredictorHead(predictor), attribution_options={"window": 4}
    ).explain(x)
    torch.testing.assert_close(exp.confidence, predictor(x).detach()[:, 0])
    assert exp.class_map.shape == exp.confidence_map.shape == (2, 8, 8)  # predictor's map resized to the input


def test_black_box_bad_requests_are_one_line() -> None:
    model = _tiny()
    assert not attribution_class("occlusion").reads_layer and attribution_class("pgc:GradCAM").reads_layer
    with pytest.raises(UserError, match="black-box method.*drop attribution.layer=0"):
        create_attribution("occlusion", model, "0")
    with pytest.raises(UserError, match="stride \\[5, 5\\] must not exceed its window \\[4, 4\\]"):
        Occlusion(model, window=4, stride=5)
    with pytest.raises(UserError, match="window .* must be an int or \\[height, width\\]"):
        Occlusion(model, window=[2, 2, 2])
    with pytest.raises(UserError, match="larger than the 8x8 input"):
        Occlusion(model, window=9)(torch.zeros(1, 3, 8, 8), lambda out: out)
    with pytest.raises(UserError, match="batch_size"):
        RISE(model, batch_size=0)
    with pytest.raises(UserError, match="reads a layer, but the embedder is a plain function"):
        VerificationExplainer(lambda x: x.flatten(1), None, "gradxact")
    maps = VerificationExplainer(lambda x: x.flatten(1), None, "occlusion", window=4, stride=4).explain(
        torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    )
    assert maps.similar.shape == (2, 1, 8, 8)


METRICS = "metrics=[parts,interventions,deletion,insertion,road,randomisation]"
OPTIONS = {
    "rise": ("attribution=rise", "attribution.kwargs.masks=8", "attribution.kwargs.grid=3"),
    "occlusion": ("attribution=occlusion", "attribution.kwargs.window=16", "attribution.kwargs.stride=16"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained checkpoints in train.py's format: a 6-identity classifier and a margin embedder."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return {
        "scout": _save(ClassifierModule("resnet18", 6, input_spec=SPEC), folder / "softmax.ckpt"),
        "verify": _save(
            MarginEmbedderModule("resnet18", 6, heldout_identities=3, input_spec=SPEC, target_layer="layer3"),
            folder / "arcface.ckpt",
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_black_box_scout_with_every_metric(method: str, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    proc = run_entry(
        "explain.py",
        f"ckpt_path={checkpoints['scout']}",
        "max_pairs=1",
        METRICS,
        "metric_options.steps=4",
        *OPTIONS[method],
        *FACEPARTS,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(tmp_path, "explain")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attribution"] == method and summary["layer"] is None
    item = json.loads((out / "explanations.json").read_text())["pairs"][0]["image_1"]
    assert item["deletion_auc"] is not None and item["road_auc"] is not None
    assert "intervention_spearman" in item and "randomisation_spearman_conv1" in item


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_black_box_verify(method: str, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    proc = run_entry(
        "explain.py",
        "mode=verify",
        "pairs=triplets",
        "max_pairs=2",
        f"ckpt_path={checkpoints['verify']}",
        *OPTIONS[method],
        *FACEPARTS,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(tmp_path, "explain")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attribution"] == method and summary["triplets"] == 2 and summary["layer"] is None
    record = json.loads((out / "explanations.json").read_text())["pairs"][0]
    assert (out / record["figure"]).is_file()


PLUGIN = '''"""A throwaway black-box method: hide the left half, then the right half."""

import torch

from scout_exp.attribution import BlackBoxAttribution, register_attribution


@register_attribution("my_method")
class Halves(BlackBoxAttribution):
    def masks(self, size):
        keep = torch.ones(2, *size)
        keep[0, :, : size[1] // 2] = 0
        keep[1, :, size[1] // 2 :] = 0
        return keep
'''


@pytest.mark.slow
def test_a_black_box_plugin_runs_from_a_file(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """One .py file overriding ``masks`` plus its config (in a folder on Hydra's search path)."""
    plugin = tmp_path / "my_method.py"
    plugin.write_text(PLUGIN)
    (tmp_path / "conf" / "attribution").mkdir(parents=True)
    (tmp_path / "conf" / "attribution" / "my_method.yaml").write_text("method: my_method\nlayer: null\nkwargs: {}\n")
    proc = run_entry(
        "explain.py",
        f"plugins=[{plugin}]",
        "attribution=my_method",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "+attribution.kwargs.batch_size=3",
        f"ckpt_path={checkpoints['scout']}",
        "max_pairs=1",
        "metrics=[deletion]",
        *FACEPARTS,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(tmp_path, "explain")
    assert json.loads((out / "summary.json").read_text())["attribution"] == "my_method"
    item = json.loads((out / "explanations.json").read_text())["pairs"][0]["image_1"]
    assert item["deletion_auc"] is not None
