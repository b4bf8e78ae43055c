"""Tests of the attribution engine, the built-in methods and the adapters against direct autograd."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from scout_exp.attribution import (
    BaseAttribution,
    create_attribution,
    layer_gradients,
    list_attributions,
    normalise,
    register_attribution,
    resolve_layer,
    upsample,
)
from scout_exp.attribution import base as base_mod
from scout_exp.errors import UserError


class TinyCNN(nn.Module):
    """Three convs at 16x16; in-place ReLUs after each conv exercise the engine's clone."""

    def __init__(self, n_classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 6, 3, padding=1, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def tiny_resnet() -> nn.Module:
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None, num_classes=6)


def three_targets(logits: torch.Tensor) -> torch.Tensor:
    """Logit of class 1, logit of class 3 and the softmax score: (B, 3)."""
    return torch.stack([logits[:, 1], logits[:, 3], logits.softmax(1).amax(1)], dim=1)


def direct_gradients(model: nn.Module, layer: str, x: torch.Tensor, targets) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: plain forward keeping f, then one autograd.grad per target and sample."""
    ref = copy.deepcopy(model).eval()
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    kept = {}
    module = dict(ref.named_modules())[layer]

    def keep(_m, _i, out):
        kept["f"] = out
        return out + 0  # later in-place ops (the residual add) must not overwrite f

    handle = module.register_forward_hook(keep)
    q = targets(ref(x))
    handle.remove()
    f = kept["f"]
    grads = np.zeros((x.shape[0], q.shape[1], *f.shape[1:]), dtype=np.float64)
    for b in range(x.shape[0]):
        for t in range(q.shape[1]):
            (g,) = torch.autograd.grad(q[b, t], f, retain_graph=True)
            grads[b, t] = g[b].double().numpy()
    return f.detach().double().numpy(), grads


def by_hand(method: str, f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Each method's formula written out per sample, target and channel with numpy."""
    batch, n_t, n_k = g.shape[:3]
    out = np.zeros((batch, n_t, *f.shape[2:]))
    for b in range(batch):
        for t in range(n_t):
            acc = np.zeros(f.shape[2:])
            for k in range(n_k):
                fk, gk = f[b, k], g[b, t, k]
                if method == "gradcam":
                    acc += gk.mean() * fk
                elif method == "gradcampp":
                    den = 2 * gk**2 + fk.sum() * gk**3
                    alpha = np.divide(gk**2, den, out=np.zeros_like(gk), where=den != 0)
                    acc += (alpha * np.maximum(gk, 0)).sum() * fk
                elif method == "xgradcam":
                    if fk.sum() != 0:
                        acc += (gk * fk / fk.sum()).sum() * fk
                elif method == "layercam":
                    acc += np.maximum(gk, 0) * fk
                elif method in ("hirescam", "gradxact", "gradxact_signed"):
                    acc += gk * fk
            if method in ("gradcam", "gradcampp", "layercam"):
                acc = np.maximum(acc, 0)
            if method == "gradxact":
                acc = np.where(acc < 0, 1e-7, acc)
            out[b, t] = acc
    return out


CASES = {
    "tiny": ("features.4", 16),  # last conv, followed by an in-place ReLU
    "resnet": ("layer2.1.bn2", 32),  # followed by the in-place residual add
}
METHODS = ["gradcam", "gradcampp", "gradxact", "gradxact_signed", "xgradcam", "layercam", "hirescam"]


def make(case: str) -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN() if case == "tiny" else tiny_resnet()


@functools.cache
def reference(case: str) -> tuple[nn.Module, torch.Tensor, np.ndarray, np.ndarray]:
    """Model, input and the direct-autograd (f, g) of a case, computed once per session."""
    layer, size = CASES[case]
    model = make(case)
    torch.manual_seed(2)
    x = torch.randn(2, 3, size, size)
    return (model, x, *direct_gradients(model, layer, x, three_targets))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", METHODS)
def test_methods_match_direct_autograd(case: str, method: str) -> None:
    model, x, f, g = reference(case)
    layer = CASES[case][0]
    if method == "gradxact_signed":
        attr = create_attribution("gradxact", model, layer, clamp_negative=False)
    else:
        attr = create_attribution(method, model, layer)
    maps = attr(x, three_targets)
    expected = by_hand(method, f, g)
    assert maps.shape == expected.shape
    np.testing.assert_allclose(maps.double().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert np.abs(expected).max() > 0  # the comparison is not vacuous


def test_layer_gradients_values_and_shapes() -> None:
    model = make("tiny")
    x = torch.randn(2, 3, 16, 16)
    lg = layer_gradients(model, "features.4", x, three_targets)
    f, g = direct_gradients(model, "features.4", x, three_targets)
    assert lg.activations.shape == (2, 8, 8, 8) and lg.gradients.shape == (2, 3, 8, 8, 8)
    np.testing.assert_allclose(lg.activations.numpy(), f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lg.gradients.numpy(), g, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(lg.targets.numpy(), three_targets(model(x)).numpy(), rtol=1e-5)
    assert lg.outputs.shape == (2, 5) and not lg.outputs.requires_grad


@pytest.mark.parametrize(
    "ours,theirs,kw",
    [
        ("gradcam", GradCAM, {}),
        ("gradcampp", GradCAMPlusPlus, {"eps": 1e-6}),
        ("xgradcam", XGradCAM, {}),
        ("layercam", LayerCAM, {}),
        ("hirescam", HiResCAM, {}),
    ],
)
def test_normalised_maps_equal_pytorch_grad_cam(ours: str, theirs: type, kw: dict) -> None:
    model = tiny_resnet().eval()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32)
    layer = model.layer2
    classes = [1, 4]
    maps = create_attribution(ours, model, layer, **kw)(x, lambda o: o[:, classes])
    # pytorch-grad-cam: ReLU, min-max, resize to the input, min-max again; compare like with like.
    mine = normalise(upsample(torch.relu(maps), (32, 32)))
    cam = theirs(model, [layer])
    for t, c in enumerate(classes):
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 2)
        np.testing.assert_allclose(mine[:, t].numpy(), ref, atol=1e-4)
    cam.activations_and_grads.release()


def test_engine_restores_model_state_and_leaves_no_grads() -> None:
    model = make("resnet")
    model.train()
    model.fc.bias.requires_grad_(False)
    running = model.bn1.running_mean.clone()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    create_attribution("gradcam", model)(x, three_targets)
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None
    assert not model.fc.bias.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "fc.bias")
    assert all(m.training for m in model.modules())
    assert torch.equal(model.bn1.running_mean, running)  # ran in eval mode


def test_engine_restores_state_on_error() -> None:
    model = make("tiny").train()

    def bad_targets(_out: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        layer_gradients(model, None, torch.randn(1, 3, 16, 16), bad_targets)
    assert all(p.requires_grad for p in model.parameters())
    assert model.training and model.features.training
    assert not model.features[4]._forward_hooks


def test_one_forward_one_batched_backward_no_graph_before_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make("tiny")
    calls = {"forward": 0, "grad": [], "early_requires_grad": None}
    model.register_forward_hook(lambda *_: calls.__setitem__("forward", calls["forward"] + 1))
    model.features[0].register_forward_hook(
        lambda _m, _i, out: calls.__setitem__("early_requires_grad", out.requires_grad)
    )
    real_grad = torch.autograd.grad

    def spy(*args, **kwargs):
        calls["grad"].append(kwargs.get("is_grads_batched", False))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    layer_gradients(model, "features.4", torch.randn(2, 3, 16, 16), three_targets)
    assert calls["forward"] == 1
    assert calls["grad"] == [True]
    assert calls["early_requires_grad"] is False


def test_fallback_loop_matches_batched(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make("tiny")
    x = torch.randn(2, 3, 16, 16)
    batched = layer_gradients(model, "features.4", x, three_targets).gradients
    real_grad = torch.autograd.grad

    def no_vmap(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("vmap not supported")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    looped = layer_gradients(model, "features.4", x, three_targets).gradients
    torch.testing.assert_close(looped, batched)


def test_works_under_inference_mode() -> None:
    model = make("tiny")
    with torch.inference_mode():
        x = torch.randn(1, 3, 16, 16)
        maps = create_attribution("gradcam", model)(x, three_targets)
    assert maps.shape == (1, 3, 8, 8)


def test_resolve_layer_default_and_errors() -> None:
    model = make("resnet")
    assert resolve_layer(model, None)[0] == "layer4.1.conv2"
    assert resolve_layer(model, model.layer3)[0] == "layer3"
    with pytest.raises(UserError, match="layer4") as err:
        resolve_layer(model, "layer4.1.conv9")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError):
        resolve_layer(model, nn.Conv2d(1, 1, 1))
    with pytest.raises(UserError, match="no nn.Conv2d"):
        resolve_layer(nn.Sequential(nn.Linear(2, 2)), None)


def test_layer_running_twice_is_a_user_error() -> None:
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 2, 1), relu, nn.Conv2d(2, 2, 1), relu, nn.Flatten())
    with pytest.raises(UserError, match="2 times"):
        layer_gradients(model, relu, torch.randn(1, 3, 2, 2), lambda o: o[:, 0])


def test_upsample_and_normalise() -> None:
    maps = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]], [[3.0, 3.0], [3.0, 3.0]]]])
    n = normalise(maps)
    torch.testing.assert_close(n[0, 0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    assert torch.equal(n[0, 1], torch.zeros(2, 2))
    one_pixel = upsample(torch.full((1, 1, 1, 1), 3.7), (7, 7))  # float noise must not be stretched
    assert torch.equal(normalise(one_pixel), torch.zeros(1, 1, 7, 7))
    up = upsample(maps, (4, 4))
    assert up.shape == (1, 2, 4, 4)
    # half-pixel bilinear: corners replicate, the first interior sample is 0.75*a + 0.25*b
    assert up[0, 0, 0, 0] == 0.0 and torch.isclose(up[0, 0, 0, 1], torch.tensor(0.5))


def test_registry() -> None:
    assert {"gradcam", "gradcampp", "gradxact", "xgradcam", "layercam", "hirescam"} <= set(list_attributions())
    with pytest.raises(UserError, match="unknown attribution"):
        create_attribution("nope", make("tiny"))

    @register_attribution("test_ones")
    class Ones(BaseAttribution):
        def combine(self, activations, gradients):
            return torch.ones(gradients.shape[:2] + activations.shape[-2:])

    try:
        maps = create_attribution("test_ones", make("tiny"))(torch.randn(1, 3, 16, 16), three_targets)
        assert torch.equal(maps, torch.ones(1, 3, 8, 8))
    finally:
        base_mod.ATTRIBUTIONS.pop("test_ones")


def test_pgc_adapter_matches_engine() -> None:
    model = tiny_resnet()
    x = torch.randn(2, 3, 32, 32)
    engine = create_attribution("gradcam", model, "layer2")(x, three_targets)
    pgc = create_attribution("pgc:GradCAM", model, "layer2")(x, three_targets)
    assert pgc.shape == (2, 3, 32, 32)
    torch.testing.assert_close(normalise(upsample(engine, (32, 32))), pgc, atol=1e-4, rtol=0)
    assert all(p.grad is None for p in model.parameters())
    eigen = create_attribution("pgc:EigenCAM", model, "layer2")(x, three_targets)
    assert eigen.shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="pytorch-grad-cam class"):
        create_attribution("pgc:NoSuchCAM", model)


def test_captum_adapter_matches_engine() -> None:
    pytest.importorskip("captum")
    model = make("tiny")
    x = torch.randn(2, 3, 16, 16)
    for ours, theirs in (("gradcam", "LayerGradCam"), ("hirescam", "LayerGradientXActivation")):
        mine = create_attribution(ours, model, "features.4")(x, three_targets)
        cap = create_attribution(f"captum:{theirs}", model, "features.4")(x, three_targets)
        expected = cap if ours == "hirescam" else torch.relu(cap)
        torch.testing.assert_close(mine, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(UserError, match="Captum layer method"):
        create_attribution("captum:Saliency", model)


def test_captum_missing_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(UserError, match="pip install captum"):
        create_attribution("captum:LayerGradCam", make("tiny"))


def test_bench_model_smoke() -> None:
    from scout_exp.bench.explain import bench_model

    res = bench_model(tiny_resnet(), torch.randn(2, 3, 32, 32), repeats=1)
    assert res["layer"] == "layer4.1.conv2"
    assert res["max_abs_diff_normalised"] <= 1e-4
    assert res["engine_wall_s"] > 0 and res["pgc_over_engine_cpu"] > 0
    # with the weights frozen pytorch-grad-cam gives the same maps (only the weight gradients are skipped)
    assert res["pgc_frozen_max_abs_diff"] <= 1e-5 and res["pgc_frozen_over_engine_wall"] > 0


def test_scorecam_adapter_matches_pytorch_grad_cam_inside_scout() -> None:
    """Methods that forward masked batches (ScoreCAM) keep each sample's class ids (no re-chosen y*)."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import resnet18

    from scout_exp.explain.scout import ScoutExplainer

    torch.manual_seed(0)
    model = resnet18(num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    ys, yc = torch.tensor([1, 2]), torch.tensor([3, 4])
    explained = ScoutExplainer(model, "pgc:ScoreCAM", "layer4").explain(x, ys, yc)
    assert explained.y_star.tolist() == [1, 2] and explained.y_counter.tolist() == [3, 4]
    with ScoreCAM(model, [model.layer4]) as cam:
        cam.batch_size = 64
        reference = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in ys])
    torch.testing.assert_close(explained.class_map, torch.from_numpy(reference), atol=1e-4, rtol=1e-4)
