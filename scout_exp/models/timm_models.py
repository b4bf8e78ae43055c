"""Any timm model by name (``model=timm model.arch=<name>``), with the facts explaining it needs.

timm (PyPI ``timm``) builds the network; weights come from a user file (a state dict in timm's
key layout, ``.pth`` or ``.safetensors``), never from a hub. The classifier is the module timm's
``get_classifier()`` returns (``fc``, ``head``, ``head.fc``, ``classifier``, ...). A model with
patch tokens (``patch_embed`` and ``num_prefix_tokens``: ViT, DeiT, EVA, ...) explains its last
block through a reshape that drops the prefix (class/register) tokens and lays the rest on the
patch grid; other models default to their last ``nn.Conv2d``.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.models.registry import register_model
from scout_exp.models.state_dicts import load_exact, read_state_dict


class PrefixTokensToMap:
    """(B, prefix + h*w, C) tokens -> (B, C, h, w): drop ``prefix`` tokens, lay the rest row-major on ``grid``."""

    def __init__(self, prefix: int, grid: tuple[int, int]) -> None:
        self.prefix, self.grid = prefix, grid

    def __call__(self, tokens: Tensor) -> Tensor:
        h, w = self.grid
        if tokens.dim() != 3 or tokens.shape[1] != self.prefix + h * w:
            raise UserError(
                f"layer output of shape {tuple(tokens.shape)} is not {self.prefix} prefix + {h * w} patch tokens; "
                "choose a transformer block (e.g. attribution.layer=blocks.11)"
            )
        return tokens[:, self.prefix :].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


@register_model(name="timm")
def timm_model(num_classes: int, arch: str, weights: str | None = None, **options: Any) -> nn.Module:
    """timm's ``arch`` with ``num_classes`` outputs (``options``: other ``timm.create_model`` arguments, e.g. ``img_size``).

    ``weights``: a state dict of that architecture, loaded strictly. Raises UserError for an
    unknown ``arch`` (naming close ones) or weights that do not fit.
    """
    import timm

    if arch not in timm.list_models():
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.5)
        raise UserError(f"unknown timm model {arch!r}; close names: {', '.join(close) or 'none'} (timm.list_models())")
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **options)
    if weights is not None:
        load_exact(model, read_state_dict(weights), weights, f"timm arch={arch}")
    # timm types create_model as a plain nn.Module; its models all define get_classifier()
    head: Any = model.get_classifier()  # type: ignore[operator]
    names = {module: name for name, module in model.named_modules()}
    facts: dict[str, Any] = {}
    if isinstance(head, nn.Linear) and head in names:
        facts["classifier_name"] = names[head]
    patch_embed: Any = getattr(model, "patch_embed", None)
    blocks = getattr(model, "blocks", None)
    prefix = getattr(model, "num_prefix_tokens", None)
    if patch_embed is not None and prefix is not None and isinstance(blocks, nn.Sequential):
        facts["feature_reshape"] = PrefixTokensToMap(int(prefix), tuple(patch_embed.grid_size))
        facts["default_target_layer"] = f"blocks.{len(blocks) - 1}"
    # plain attributes, read by the registry and the attribution engine (Module.__setattr__ stores any value)
    model.__dict__.update(facts)
    return model
