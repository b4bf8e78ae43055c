"""Reading published face-model weights safely, and loading them strictly with one-line errors.

Face models are published as bare state dicts (insightface ``arcface_torch``'s ``backbone.pth``),
as training checkpoints that wrap one (MagFace: ``{"state_dict": {"features.module.<key>": ...}}``,
AdaFace: a Lightning ``.ckpt`` whose backbone keys start with ``model.``), or as ``.safetensors``.
:func:`read_state_dict` opens all of them without running code from the file
(``torch.load(weights_only=True)``, or safetensors); :func:`load_exact` loads one strictly and, when
the keys do not fit, names the first mismatching keys and what the file looks like instead
(each backbone module registers a :func:`register_layout` describer for its own key layout).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.io import unreadable_checkpoint

#: key layout -> "an IResNet-100 (model=iresnet100)"-style description, or None when not its layout
LayoutDescriber = Callable[[Collection[str]], str | None]
_LAYOUTS: list[LayoutDescriber] = []
_LISTED = 3
#: prefixes that training checkpoints put before a backbone's keys (Lightning, MagFace, DDP, timm-style)
WRAPPER_PREFIXES = ("model.", "features.module.", "module.", "backbone.")


def register_layout(describe: LayoutDescriber) -> LayoutDescriber:
    """Register a describer of one backbone family's state-dict keys, used in mismatch errors."""
    _LAYOUTS.append(describe)
    return describe


def describe_layout(keys: Collection[str]) -> str | None:
    """What a state dict with ``keys`` looks like (the first registered describer that knows it), or None.

    Keys are also tried without the wrapper prefixes published files use (:data:`WRAPPER_PREFIXES`).
    """
    for prefix in ("", *WRAPPER_PREFIXES):
        inside = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
        for describe in _LAYOUTS:
            found = describe(inside) if inside else None
            if found:
                return found
    return None


def read_state_dict(path: str | Path, prefixes: Iterable[str] = ()) -> dict[str, Tensor]:
    """The tensors of a weight file: a bare state dict or a checkpoint holding one under ``state_dict``.

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``
    (``argparse.Namespace`` allowed, as Lightning checkpoints keep their hyper-parameters in one).
    The first of ``prefixes`` that starts every key (after a DDP ``module.``) is removed; keys under
    none of them are dropped when some are (e.g. a checkpoint's ``head.`` next to its ``model.``).
    Raises UserError for a missing, unreadable or unsafe file, or one without tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weight file {path} does not exist; pass the path of the model's weights")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw: Any = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for bad headers
            raise UserError(f"cannot read {path} as safetensors: {str(err).splitlines()[0]}") from None
    else:
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds for corrupt or unsafe files; its advice is never repeated
            raise UserError(
                unreadable_checkpoint(path, err).replace("pass a .ckpt written by train.py", "pass a state dict")
            ) from None
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else None
    tensors = {k: v for k, v in (state or {}).items() if isinstance(v, Tensor)}
    if not tensors:
        raise UserError(f"{path} holds no tensors; pass a state dict (.pth/.pt/.ckpt/.safetensors)")
    return strip_prefix(tensors, prefixes)


def strip_prefix(state: Mapping[str, Tensor], prefixes: Iterable[str]) -> dict[str, Tensor]:
    """``state`` without a DDP ``module.`` and without the first of ``prefixes`` that some keys carry.

    Keys outside that prefix are dropped (a training checkpoint's loss head, e.g. AdaFace's ``head.kernel``).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for prefix in prefixes:
        inside = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if inside:
            return inside
    return dict(state)


def load_exact(model: nn.Module, state: Mapping[str, Tensor], source: str, name: str) -> None:
    """Load ``state`` into ``model`` strictly (every key, every shape).

    Raises UserError naming the first missing, unexpected and mis-shaped keys and, when a
    registered layout recognises the file, which model it is (``name``: the configured one).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if not (missing or unexpected or wrong):
        model.load_state_dict(state, strict=True)
        return
    detail = "; ".join(
        f"{what} {', '.join(keys[:_LISTED])}{' ...' if len(keys) > _LISTED else ''} ({len(keys)})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
        if keys
    )
    found = describe_layout(list(state))
    hint = f"; the file looks like {found}" if found else ""
    raise UserError(f"{source} does not fit model={name}: {detail}{hint}")
