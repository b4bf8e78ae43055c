"""Backbone registry in the style of timm: one decorated factory per backbone, holding its facts.

Every registered factory takes ``num_classes`` (plus keyword options from ``configs/model/``)
and returns an ``nn.Module`` mapping a preprocessed image batch to identity logits, whose last
operation is its *classifier* (an ``nn.Linear``, ``fc`` unless the registration names another
layer) applied to a flat feature vector. Replacing the classifier by ``nn.Identity`` therefore
yields the feature extractor (see :func:`split_classifier`).

The registration (``@register_model(input_spec=..., target_layer=..., classifier=...,
feature_reshape=...)``) is the one place a backbone's facts are written; ``configs/model/*.yaml``
hold only what a user overrides (a null ``input`` field or ``target_layer`` takes the registered
value, see :func:`resolve_model_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, overload

from torch import Tensor, nn

from scout_exp.data.transforms import InputSpec
from scout_exp.registry import Registry

ModelFactory = Callable[..., nn.Module]
#: token output -> (B, C, h, w) feature map (e.g. a ViT's (B, 1+N, C) without its class token)
FeatureReshape = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ModelInfo:
    """A registered backbone: its factory and the facts explaining it needs.

    ``input_spec``: the preprocessing its weights expect (None: :class:`InputSpec`'s defaults);
    ``target_layer``: the default attribution layer (None: the last ``nn.Conv2d``);
    ``classifier``: dotted name of the identity layer (an ``nn.Linear``);
    ``feature_reshape``: maps a non-4-D target-layer output (tokens) to (B, C, h, w), or None.
    """

    factory: ModelFactory
    input_spec: InputSpec | None = None
    target_layer: str | None = None
    classifier: str = "fc"
    feature_reshape: FeatureReshape | None = None


_MODELS: Registry[ModelInfo] = Registry("model", package="scout_exp.models")


@overload
def register_model(fn: ModelFactory) -> ModelFactory: ...
@overload
def register_model(
    *,
    name: str | None = None,
    input_spec: InputSpec | None = None,
    target_layer: str | None = None,
    classifier: str = "fc",
    feature_reshape: FeatureReshape | None = None,
) -> Callable[[ModelFactory], ModelFactory]: ...
def register_model(
    fn: ModelFactory | None = None,
    *,
    name: str | None = None,
    input_spec: InputSpec | None = None,
    target_layer: str | None = None,
    classifier: str = "fc",
    feature_reshape: FeatureReshape | None = None,
) -> Any:
    """Register a backbone factory under ``name`` (default: its function name) with its facts.

    Bare (``@register_model``) or with the facts of :class:`ModelInfo`. Raises ValueError for a
    name registered twice.
    """

    def deco(factory: ModelFactory) -> ModelFactory:
        info = ModelInfo(factory, input_spec, target_layer, classifier, feature_reshape)
        _MODELS.add(name or factory.__name__, info)
        return factory

    return deco(fn) if fn is not None else deco


def list_models() -> list[str]:
    """Names of all registered backbones."""
    return _MODELS.names()


def model_info(name: str) -> ModelInfo:
    """The registration of backbone ``name``; UserError naming the valid ones when unknown."""
    return _MODELS.lookup(name)


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered backbone ``name`` with an identity layer of ``num_classes``.

    The model carries its registered ``classifier_name`` and (if declared) ``feature_reshape`` as
    attributes, read by :func:`get_classifier` and the attribution engine. Raises UserError for an
    unknown name.
    """
    info = model_info(name)
    model = info.factory(num_classes=num_classes, **kwargs)
    # torch annotates Module.__setattr__'s value as Tensor | Module, but it stores any value as a plain attribute
    if not hasattr(model, "classifier_name"):
        model.classifier_name = info.classifier  # type: ignore[assignment]
    if info.feature_reshape is not None and not hasattr(model, "feature_reshape"):
        model.feature_reshape = info.feature_reshape  # type: ignore[assignment]
    return model


def resolve_model_config(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ``configs/model`` mapping with the registered facts filled in where it leaves them null.

    ``input`` becomes the full spec (registered fields, then the non-null fields of the config);
    ``target_layer`` the config's, else the registered default. Raises UserError for an unknown name.
    """
    info = model_info(str(model_cfg["name"]))
    spec = asdict(info.input_spec or InputSpec())
    spec.update({k: v for k, v in dict(model_cfg.get("input") or {}).items() if v is not None})
    resolved = dict(model_cfg)
    resolved["input"] = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()}
    if resolved.get("target_layer") is None:
        resolved["target_layer"] = info.target_layer
    return resolved


def classifier_name(model: nn.Module) -> str:
    """Dotted name of ``model``'s identity layer (its registered ``classifier``; ``fc`` by default)."""
    return str(getattr(model, "classifier_name", "fc"))


def get_classifier(model: nn.Module) -> nn.Linear:
    """``model``'s identity layer; TypeError when it is not an ``nn.Linear``."""
    name = classifier_name(model)
    layer = model.get_submodule(name)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{type(model).__name__}.{name} must be nn.Linear, got {type(layer).__name__}")
    return layer


def split_classifier(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """Return ``(trunk, classifier)``: ``model`` with its identity layer replaced by ``Identity`` (in place), and that layer.

    Raises TypeError when the identity layer is not an ``nn.Linear``.
    """
    fc = get_classifier(model)
    parent_name, _, child = classifier_name(model).rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.Identity())
    return model, fc


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One forward of a registry model returning (the flat feature entering its classifier (B, D), the logits (B, C)).

    The one feature-extraction path of the code: a forward pre-hook on the classifier reads its
    input, so any registered backbone works unchanged and the logits come from the same pass.
    """
    captured: list[Tensor] = []
    handle = get_classifier(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1), logits
