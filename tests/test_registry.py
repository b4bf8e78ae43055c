"""The generic registry, package discovery, and backbones that carry their facts (issue 20, items 3 and 6)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from scout_exp.attribution import create_attribution, layer_gradients
from scout_exp.cli import CONFIG_DIR
from scout_exp.data.transforms import InputSpec
from scout_exp.errors import UserError
from scout_exp.models import (
    create_model,
    features_and_logits,
    get_classifier,
    model_info,
    register_model,
    resolve_model_config,
    split_classifier,
)
from scout_exp.models import registry as model_registry
from scout_exp.registry import Registry

# --- the helper ---------------------------------------------------------------------------------


def test_registry_registers_creates_and_names_valid_choices() -> None:
    reg: Registry[type] = Registry("widget", hint=" (or build your own)")

    @reg.register
    class Round:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    reg.register("square")(dict)
    assert reg.names() == ["Round", "square"] and "Round" in reg and len(reg) == 2
    assert reg.create("Round", size=3).size == 3
    with pytest.raises(ValueError, match="widget 'square' is registered twice"):
        reg.add("square", list)
    with pytest.raises(UserError) as err:
        reg.lookup("oval")
    assert str(err.value) == "unknown widget 'oval'; choose one of: Round, square (or build your own)"


def test_registry_discovers_a_module_no_init_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plug-in module nobody imports still registers: the first lookup imports the package's modules."""
    package = tmp_path / "plugins_under_test"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from scout_exp.registry import Registry\nREG = Registry('plug-in', package=__name__)\n"
    )
    (package / "extra.py").write_text("from plugins_under_test import REG\nREG.add('extra', 42)\n")
    (package / "__main__.py").write_text("raise SystemExit('a __main__ module is never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        reg = importlib.import_module("plugins_under_test").REG
        assert "plugins_under_test.extra" not in sys.modules
        assert reg.lookup("extra") == 42 and reg.names() == ["extra"]
    finally:
        for name in [m for m in sys.modules if m.startswith("plugins_under_test")]:
            del sys.modules[name]


@pytest.mark.parametrize("package", ["scout_exp.models", "scout_exp.attribution", "scout_exp.heads", "scout_exp.zoo"])
def test_every_builtin_plugin_module_is_imported_by_the_first_lookup(package: str) -> None:
    """No built-in plug-in depends on an import line: after a lookup every module of its package is loaded."""
    from scout_exp.attribution.base import ATTRIBUTIONS
    from scout_exp.heads.base import _HEADS
    from scout_exp.zoo.registry import _ENTRIES

    reg = {r.package: r for r in (model_registry._MODELS, ATTRIBUTIONS, _HEADS, _ENTRIES)}[package]
    assert reg.names()
    modules = pkgutil.iter_modules(importlib.import_module(package).__path__)
    missing = [m.name for m in modules if m.name != "__main__" and f"{package}.{m.name}" not in sys.modules]
    assert not missing, missing


def test_unknown_plugin_names_list_the_valid_ones() -> None:
    from scout_exp.heads import create_head
    from scout_exp.zoo import get_entry

    with pytest.raises(UserError, match="unknown model 'nope'; choose one of: adaface_ir101, .*iresnet50, .*resnet18"):
        create_model("nope", 3)
    with pytest.raises(UserError, match="unknown attribution 'nope'; choose one of: corrrise, .*gradcam.*captum:"):
        create_attribution("nope", nn.Conv2d(3, 3, 1))
    with pytest.raises(UserError, match="unknown confidence head 'nope'; choose one of: certainty"):
        create_head("nope")
    with pytest.raises(UserError, match="unknown pretrained model 'nope'; choose one of: face_descriptor"):
        get_entry("nope")


# --- backbones carry their facts ----------------------------------------------------------------


def test_backbone_facts_live_in_the_registration_not_the_yaml() -> None:
    """configs/model/*.yaml leave input and target_layer null; the registration supplies them."""
    from scout_exp.cli import check_overrides

    for path in sorted((CONFIG_DIR / "model").glob("[!_]*.yaml")):
        cfg = OmegaConf.to_container(check_overrides("train", [f"model={path.stem}"]).model)
        assert cfg["target_layer"] is None and set(cfg["input"].values()) == {None}, path.name
        info = model_info(cfg["name"])
        resolved = resolve_model_config(cfg)
        assert InputSpec.from_config(resolved["input"]) == (info.input_spec or InputSpec())
        assert resolved["target_layer"] == info.target_layer
    assert model_info("vggface2_resnet50").input_spec.channel_order == "BGR"
    assert model_info("face_descriptor").target_layer == "conv128_2"


def test_a_config_value_overrides_the_registered_fact() -> None:
    resolved = resolve_model_config({"name": "casianet", "input": {"size": 48, "mean": None}, "target_layer": "stage3"})
    assert resolved["input"]["size"] == 48 and resolved["input"]["mean"] == [0.5, 0.5, 0.5]
    assert resolved["target_layer"] == "stage3"


class _HeadNamed(nn.Module):
    """A backbone whose identity layer is ``head.linear``, not ``fc``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential()
        self.head.add_module("linear", nn.Linear(4, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


def test_the_registered_classifier_name_replaces_fc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_registry, "_MODELS", Registry("model"))
    register_model(classifier="head.linear", target_layer="conv")(lambda num_classes: _HeadNamed(num_classes))
    info = model_info("<lambda>")
    assert info.classifier == "head.linear" and info.target_layer == "conv"
    model = create_model("<lambda>", 6)
    assert get_classifier(model) is model.head.linear and get_classifier(model).out_features == 6
    x = torch.randn(2, 3, 8, 8)
    feature, logits = features_and_logits(model, x)
    assert feature.shape == (2, 4) and logits.shape == (2, 6)
    trunk, linear = split_classifier(model)
    torch.testing.assert_close(linear(trunk(x)), logits)


# --- a transformer joins through its declared feature reshape ----------------------------------


def tokens_to_map(tokens: Tensor) -> Tensor:
    """ViT tokens (B, 1+N, C) -> (B, C, h, w): drop the class token, lay the N = h*w patches on their grid."""
    patches = tokens[:, 1:]
    side = int(patches.shape[1] ** 0.5)
    return patches.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


class TinyViT(nn.Module):
    """Patch embedding (4x4 patches), a class token, two MLP blocks on tokens, class-token classifier."""

    def __init__(self, num_classes: int, dim: int = 8) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = nn.Sequential(nn.Sequential(nn.Linear(dim, dim), nn.GELU()), nn.Linear(dim, dim))
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = self.blocks(tokens)
        return self.fc(tokens.mean(dim=1))


def test_a_token_model_explains_through_its_registered_reshape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_registry, "_MODELS", Registry("model"))

    @register_model(target_layer="blocks.1", feature_reshape=tokens_to_map)
    def tiny_vit(num_classes: int) -> nn.Module:
        return TinyViT(num_classes)

    torch.manual_seed(0)
    model = create_model("tiny_vit", 3).eval()
    x = torch.randn(2, 3, 16, 16)
    layer = model_info("tiny_vit").target_layer
    targets = lambda out: out  # noqa: E731  (B, 3): one map per class
    lg = layer_gradients(model, layer, x, targets)
    assert lg.activations.shape == (2, 8, 4, 4) and lg.gradients.shape == (2, 3, 8, 4, 4)

    # the same gradients by hand: d logit_t / d tokens, laid on the grid by the same reshape
    tokens: list[Tensor] = []
    handle = model.blocks[1].register_forward_hook(lambda _m, _i, out: tokens.append(out))
    logits = model(x)
    handle.remove()
    for t in range(3):
        (grad,) = torch.autograd.grad(logits[:, t].sum(), tokens[0], retain_graph=True)
        torch.testing.assert_close(lg.gradients[:, t], tokens_to_map(grad))
    torch.testing.assert_close(lg.activations, tokens_to_map(tokens[0].detach()))

    maps = create_attribution("gradcam", model, layer)(x, targets)
    assert maps.shape == (2, 3, 4, 4) and torch.isfinite(maps).all()

    # wrapped (as a gallery wraps its embedder), the backbone keeps its reshape
    wrapper = nn.Module()
    wrapper.embedder = model
    wrapper.forward = lambda inp: wrapper.embedder(inp)
    assert layer_gradients(wrapper, f"embedder.{layer}", x, targets).activations.shape == (2, 8, 4, 4)


def test_a_token_layer_without_a_declared_reshape_is_refused() -> None:
    with pytest.raises(UserError, match="not a \\(batch, channels, height, width\\) feature map"):
        layer_gradients(TinyViT(3).eval(), "blocks.1", torch.randn(1, 3, 16, 16), lambda out: out)
