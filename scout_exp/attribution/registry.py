"""Building an attribution method by name: the registered engine methods and the third-party adapters."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from scout_exp.attribution.adapters import create_adapter
from scout_exp.attribution.base import ATTRIBUTIONS, BaseAttribution
from scout_exp.errors import UserError


def create_attribution(
    name: str, model: nn.Module, target_layer: str | nn.Module | None = None, **kwargs: Any
) -> BaseAttribution:
    """Build attribution ``name`` (registered, ``pgc:<Class>`` or ``captum:<Method>``) for ``model``.

    ``kwargs`` are the method's options (``attribution.kwargs`` in the config). Raises UserError for
    an unknown name.
    """
    if name.startswith(("pgc:", "captum:")):
        return create_adapter(name, model, target_layer, **kwargs)
    cls = ATTRIBUTIONS.lookup(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model", "target_layer"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UserError(
            f"attribution {name} has no option {', '.join(unknown)}; "
            f"its options (attribution.kwargs.<option>): {', '.join(sorted(accepted)) or 'none'}"
        )
    return cls(model, target_layer, **kwargs)
