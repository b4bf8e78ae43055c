"""Any ``nn.Module`` of the user's, named by ``_target_`` in YAML (``model=module``), no code needed.

The config (``configs/model/module.yaml``) gives the class and its arguments (``kwargs.net``,
built by Hydra before this factory runs), its weights, its input spec and its attribution layer;
the module's own forward decides its outputs (identity logits, or an embedding with
``model.embedding=<size>``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from scout_exp.errors import UserError
from scout_exp.models.registry import register_model
from scout_exp.models.state_dicts import load_exact, read_state_dict


@register_model(name="module")
def user_module(
    num_classes: int,
    net: nn.Module,
    weights: str | None = None,
    classifier: str | None = None,
    prefixes: Sequence[str] = (),
    pretrained: bool = True,
) -> nn.Module:
    """``net`` (an instantiated ``_target_``) with ``weights`` (a state dict, ``prefixes`` stripped) loaded strictly.

    ``num_classes`` is not used: the module decides its outputs. ``classifier``: dotted name of its
    identity ``nn.Linear``, when it has one (galleries and ``mode=verify`` then use the features it
    reads). ``pretrained``: the module is used as built (its constructor loads its own weights) when
    ``weights`` is null. Raises UserError when ``net`` is not a module or the weights do not fit.
    """
    if not isinstance(net, nn.Module):
        raise UserError(
            f"model.kwargs.net built a {type(net).__name__}, not a torch.nn.Module; give its class as _target_"
        )
    if weights is not None:
        load_exact(net, read_state_dict(weights, prefixes), weights, f"module ({type(net).__name__})")
    if classifier is not None:
        net.classifier_name = classifier  # type: ignore[assignment]
    return net
