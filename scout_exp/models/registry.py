"""Backbone registry in the style of timm: one decorated factory per backbone.

Every registered factory takes ``num_classes`` (plus keyword options from ``configs/model/``)
and returns an ``nn.Module`` mapping a preprocessed image batch to identity logits, whose last
operation is ``self.fc`` (an ``nn.Linear``) applied to a flat feature vector. Replacing ``fc``
by ``nn.Identity`` therefore yields the feature extractor (see :func:`split_classifier`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from scout_exp.errors import UserError

ModelFactory = Callable[..., nn.Module]
_MODELS: dict[str, ModelFactory] = {}


def register_model(fn: ModelFactory) -> ModelFactory:
    """Register ``fn`` under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered backbones."""
    return sorted(_MODELS)


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered backbone ``name`` with an identity layer of ``num_classes``."""
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](num_classes=num_classes, **kwargs)


def split_classifier(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """Return ``(trunk, fc)``: the model with its identity layer replaced by ``Identity``, and that layer."""
    fc = model.fc
    if not isinstance(fc, nn.Linear):
        raise TypeError(f"{type(model).__name__}.fc must be nn.Linear, got {type(fc).__name__}")
    model.fc = nn.Identity()
    return model, fc


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One forward of a registry model returning (the flat feature that enters ``fc`` (B, D), the logits (B, C)).

    The one feature-extraction path of the code: a forward pre-hook on ``fc`` reads its input, so any
    registered backbone works unchanged and the logits come from the same pass.
    """
    captured: list[Tensor] = []
    handle = model.fc.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1), logits
