"""Building an attribution method by name: the registered engine methods and the third-party adapters."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from scout_exp.attribution.adapters import CaptumAttribution, PgcAttribution, create_adapter
from scout_exp.attribution.base import ATTRIBUTIONS, BaseAttribution
from scout_exp.attribution.blackbox import BlackBoxAttribution
from scout_exp.attribution.pairwise import PairAttribution
from scout_exp.errors import UserError


def attribution_class(name: str) -> type[BaseAttribution]:
    """The class :func:`create_attribution` builds for ``name``; its class attributes say what the
    method needs (``reads_layer``, ``uses_engine``, ``verification_options``). UserError if unknown."""
    if name.startswith("pgc:"):
        return PgcAttribution
    if name.startswith("captum:"):
        return CaptumAttribution
    return ATTRIBUTIONS.lookup(name)


def black_box_methods() -> list[str]:
    """Names of the registered black-box methods: they read no layer and take no gradient (they only
    call the model; :class:`scout_exp.attribution.blackbox.BlackBoxAttribution`)."""
    return [name for name in ATTRIBUTIONS.names() if issubclass(ATTRIBUTIONS.lookup(name), BlackBoxAttribution)]


def create_attribution(
    name: str, model: nn.Module | Callable[[Tensor], Any], target_layer: str | nn.Module | None = None, **kwargs: Any
) -> BaseAttribution:
    """Build attribution ``name`` (registered, ``pgc:<Class>`` or ``captum:<Method>``) for ``model``.

    ``model`` may be a plain callable for a black-box method (``reads_layer`` False). ``kwargs`` are
    the method's options (``attribution.kwargs`` in the config). Raises UserError for an unknown
    name or option.
    """
    if name.startswith(("pgc:", "captum:")):
        return create_adapter(name, _layer_model(name, model), target_layer, **kwargs)
    cls = ATTRIBUTIONS.lookup(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model", "target_layer"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UserError(
            f"attribution {name} has no option {', '.join(unknown)}; "
            f"its options (attribution.kwargs.<option>): {', '.join(sorted(accepted)) or 'none'}"
        )
    if issubclass(cls, (BlackBoxAttribution, PairAttribution)):  # they read no layer: any callable
        return cls(model, target_layer, **kwargs)
    return cls(_layer_model(name, model), target_layer, **kwargs)


def _layer_model(name: str, model: nn.Module | Callable[[Tensor], Any]) -> nn.Module:
    """``model`` for a method that reads one of its layers; UserError when it is a plain function."""
    if not isinstance(model, nn.Module):
        raise UserError(
            f"attribution={name} reads a layer of the model, so it needs an nn.Module, not a plain function"
        )
    return model
