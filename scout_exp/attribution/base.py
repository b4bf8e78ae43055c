"""The attribution engine: one forward and one batched backward to a single layer (docs/method.md section 1).

Modelled on pytorch-grad-cam's ``BaseCAM`` (a method overrides one small function,
:meth:`BaseAttribution.combine`), but written here because pytorch-grad-cam back-propagates
through the whole network, into every parameter, once per target; this engine builds no autograd
graph before the target layer and gets the gradients of all targets in one batched call.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.modes import frozen_eval
from scout_exp.registry import Registry

TargetFn = Callable[[Tensor], Tensor]
#: a target layer's token output (e.g. (B, 1+N, C)) -> its (B, C, h, w) feature map
FeatureReshape = Callable[[Tensor], Tensor]


@dataclass
class LayerGradients:
    """Activations, per-sample gradients of every target, outputs and target values at one layer."""

    activations: Tensor  # (B, K, h, w), detached
    gradients: Tensor  # (B, T, K, h, w): d target_t / d activations, per sample
    outputs: Tensor  # model output (B, ...), detached
    targets: Tensor  # (B, T) target values, detached


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for ``layer``: a dotted name, a submodule, or None for the last Conv2d."""
    modules = dict(model.named_modules())
    if layer is None:
        convs = [(n, m) for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise UserError(f"{type(model).__name__} has no nn.Conv2d; name a target layer explicitly")
        return convs[-1]
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise UserError(
            f"the given target layer ({type(layer).__name__}) is not a submodule of "
            f"{type(model).__name__}; pass one of its submodules or a layer name"
        )
    if layer in modules and layer != "":
        return layer, modules[layer]
    candidates = [n for n, m in modules.items() if n and isinstance(m, (nn.Conv2d, nn.Sequential))] or [
        n for n in modules if n
    ]
    close = difflib.get_close_matches(str(layer), candidates, n=5, cutoff=0.3) or candidates[-5:]
    raise UserError(
        f"unknown target layer {layer!r} in {type(model).__name__}; valid names include: {', '.join(close)}"
    )


def feature_reshape_for(model: nn.Module, name: str) -> FeatureReshape | None:
    """The token -> map reshape declared for layer ``name`` of ``model``, or None.

    A backbone declares it as a ``feature_reshape`` attribute or method (``register_model(
    feature_reshape=...)`` sets it on the built model); the layer itself, then its nearest
    ancestor, is asked, so a wrapped backbone (e.g. ``embedder.`` in a gallery) keeps its reshape.
    """
    parts = name.split(".") if name else []
    for depth in range(len(parts), -1, -1):
        owner = model.get_submodule(".".join(parts[:depth]))
        reshape = getattr(owner, "feature_reshape", None)
        if callable(reshape):
            return reshape
    return None


def as_feature_map(output: Any, reshape: FeatureReshape | None) -> Any:
    """``reshape(output)`` for a non-4-D tensor when a reshape is declared; ``output`` unchanged otherwise."""
    if reshape is not None and isinstance(output, Tensor) and output.dim() != 4:
        return reshape(output)
    return output


def check_feature_map(name: str, output: Any) -> None:
    """Refuse a target layer whose output is not one (B, C, H, W) tensor (``fc``, a pooled vector, a tuple)."""
    if not isinstance(output, Tensor):
        raise UserError(
            f"target layer {name!r} returns {type(output).__name__}, not a tensor; choose a layer "
            "with a single tensor output"
        )
    if output.dim() != 4:
        raise UserError(
            f"target layer {name!r} outputs shape {tuple(output.shape)}, not a (batch, channels, height, "
            "width) feature map, so it has no spatial map; choose a convolutional layer (e.g. layer4, "
            "or attribution.layer=null for the model's default)"
        )


def layer_gradients(model: nn.Module, layer: str | nn.Module | None, x: Tensor, targets: TargetFn) -> LayerGradients:
    """One forward and one batched backward: the gradients of every target w.r.t. ``layer``'s output.

    ``targets`` maps the model output to ``(B, T)`` (or ``(B,)``) scalars. Samples are independent
    in eval mode, so d(sum_b q_bt)/d f_b is the per-sample gradient of q_bt.

    A layer with a token output (B, ...) joins through the backbone's declared reshape
    (:func:`feature_reshape_for`): the gradients are taken w.r.t. the tokens, then activations and
    each target's gradients go through the same reshape to (B, K, h, w) and (B, T, K, h, w).
    Raises UserError when the (reshaped) output is not a (B, K, h, w) tensor or the layer does not
    run exactly once.
    """
    name, module = resolve_layer(model, layer)
    reshape = feature_reshape_for(model, name)
    captured: list[Tensor] = []

    def hook(_mod: nn.Module, _inputs: Any, output: Any) -> Tensor:
        check_feature_map(name, as_feature_map(output, reshape))
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        # A clone goes downstream, so in-place ops after the layer cannot touch the leaf.
        return leaf.clone()

    x = x.detach().clone() if x.is_inference() else x.detach()
    handle = module.register_forward_hook(hook)
    try:
        with frozen_eval(model), torch.inference_mode(False), torch.enable_grad():
            outputs = model(x)
            if len(captured) != 1:
                raise UserError(
                    f"target layer {type(module).__name__} ran {len(captured)} times in one "
                    "forward pass; choose a layer that runs exactly once"
                )
            q = targets(outputs)
            q = _as_2d(q, x.shape[0])
            grads = _batched_grad(q, captured[0])
    finally:
        handle.remove()
    activations = captured[0].detach()
    if reshape is not None and activations.dim() != 4:
        batch, n_targets = grads.shape[:2]
        activations = reshape(activations)
        grads = reshape(grads.flatten(0, 1)).unflatten(0, (batch, n_targets))
    return LayerGradients(
        activations=activations,
        gradients=grads,
        outputs=_detach_all(outputs),
        targets=q.detach(),
    )


def _as_2d(q: Tensor, batch: int) -> Tensor:
    """Check the target values have shape (B, T); a (B,) vector becomes (B, 1)."""
    if not isinstance(q, Tensor):
        raise TypeError(f"targets must return a tensor, got {type(q).__name__}")
    if q.dim() == 1:
        q = q[:, None]
    if q.dim() != 2 or q.shape[0] != batch:
        raise ValueError(f"targets must return shape (B, T) with B={batch}, got {tuple(q.shape)}")
    if not q.requires_grad:
        raise ValueError("the targets do not depend on the target layer's output")
    return q


def _batched_grad(q: Tensor, leaf: Tensor) -> Tensor:
    """All T gradients in one ``autograd.grad(is_grads_batched=True)``; a loop over T if vmap fails."""
    n_targets = q.shape[1]
    eye = torch.eye(n_targets, dtype=q.dtype, device=q.device)
    grad_outputs = eye[:, None, :].expand(n_targets, q.shape[0], n_targets).contiguous()
    try:
        (g,) = torch.autograd.grad(q, leaf, grad_outputs, retain_graph=True, is_grads_batched=True, allow_unused=True)
    except RuntimeError:
        per_target = [
            torch.autograd.grad(q[:, t].sum(), leaf, retain_graph=True, allow_unused=True)[0] for t in range(n_targets)
        ]
        g = torch.stack([torch.zeros_like(leaf) if gt is None else gt for gt in per_target])
    if g is None:
        g = torch.zeros((n_targets, *leaf.shape), dtype=leaf.dtype, device=leaf.device)
    return g.transpose(0, 1)


def _detach_all(outputs: Any) -> Any:
    """Detach a tensor or a (nested) tuple/list/dict of tensors."""
    if isinstance(outputs, Tensor):
        return outputs.detach()
    if isinstance(outputs, (tuple, list)):
        return type(outputs)(_detach_all(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _detach_all(v) for k, v in outputs.items()}
    return outputs


class BaseAttribution:
    """A layer attribution method: :meth:`combine` turns activations and gradients into maps.

    Every method, layer or black box (:class:`scout_exp.attribution.blackbox.BlackBoxAttribution`),
    is called the same way: ``method(x, targets)`` -> (B, T, h, w) maps, ``targets`` mapping a
    model output batch to (N, T) scores whose row r belongs to sample r mod B. The class
    attributes say what a caller may do beyond that call.
    """

    name: str = "base"
    #: combine() can be applied to a LayerGradients from this engine
    uses_engine: ClassVar[bool] = True
    #: the method reads a layer (``layer_name``/``layer``); False: it only calls the model (black box)
    reads_layer: ClassVar[bool] = True
    #: options ``mode=verify`` gives the method unless the user sets them (e.g. signed maps)
    verification_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None) -> None:
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, target_layer)

    def describe(self) -> str:
        """The method in words, for figure titles (e.g. ``gradcam at layer4``)."""
        return f"{self.name} at {self.layer_name}"

    def combine(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """(B, K, h, w) activations and (B, T, K, h, w) gradients -> (B, T, h, w) raw maps."""
        raise NotImplementedError(f"{type(self).__name__} must implement combine()")

    def __call__(self, x: Tensor, targets: TargetFn) -> Tensor:
        """Raw (B, T, h, w) maps of every target in ``targets(model(x))`` at the target layer."""
        lg = layer_gradients(self.model, self.layer, x, targets)
        return self.combine(lg.activations, lg.gradients)


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize (half-pixel centres, like cv2.resize) of the last two dims to ``size``."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return out.reshape(*lead, *out.shape[-2:])


def normalise(maps: Tensor) -> Tensor:
    """Min-max each map (last two dims) to [0, 1] as pytorch-grad-cam does, eps-safe.

    A map whose range is within float rounding of its magnitude (8 ulps; e.g. a bilinearly
    upsampled 1x1 map) counts as constant and becomes 0, instead of having its noise stretched.
    """
    maps = maps.float() if not maps.is_floating_point() else maps
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    shifted = maps - lo
    hi = shifted.amax(dim=(-2, -1), keepdim=True)
    scale = maps.abs().amax(dim=(-2, -1), keepdim=True)
    flat = hi <= 8 * torch.finfo(maps.dtype).eps * scale
    return torch.where(flat, torch.zeros_like(shifted), shifted / torch.where(flat, 1.0, hi))


#: a map whose largest magnitude is below this is float noise (e.g. a cosine of an image with itself)
DEGENERATE_ABS = 1e-9


def zero_degenerate(maps: Tensor) -> Tensor:
    """``maps`` (..., H, W) with every map whose largest magnitude is below :data:`DEGENERATE_ABS` set to 0.

    Such a map carries no evidence; min-max scaling would stretch its rounding noise to full colour.
    """
    small = maps.abs().amax(dim=(-2, -1), keepdim=True) < DEGENERATE_ABS
    return torch.where(small, torch.zeros_like(maps), maps)


A = TypeVar("A", bound=type[BaseAttribution])
#: the registered methods; every module of scout_exp.attribution is imported on the first lookup
ATTRIBUTIONS: Registry[type[BaseAttribution]] = Registry(
    "attribution",
    package="scout_exp.attribution",
    hint=", or pgc:<pytorch-grad-cam class>, captum:<Captum layer method>",
)


def register_attribution(name: str) -> Callable[[A], A]:
    """Class decorator: register an attribution method under ``name`` (ValueError if it is taken)."""

    def deco(cls: A) -> A:
        ATTRIBUTIONS.add(name, cls)
        cls.name = name
        return cls

    return deco


def list_attributions() -> list[str]:
    """Registered method names (adapters add ``pgc:<CAMClass>`` and ``captum:<LayerMethod>``)."""
    return ATTRIBUTIONS.names()
