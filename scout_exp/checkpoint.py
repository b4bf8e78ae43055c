"""Reading train.py checkpoints safely, and loading state dicts with one-line errors.

Every checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only.
``train.py`` records which training objective wrote a checkpoint under :data:`OBJECTIVE_KEY`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from scout_exp.errors import UserError
from scout_exp.io import unreadable_checkpoint

#: checkpoint key holding ``{"name": <objective config name>, "target": <LightningModule class path>}``
OBJECTIVE_KEY = "scout_exp_objective"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint safely (``weights_only=True``) with a clear error when unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the .ckpt written by train.py")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for corrupt or unsafe files; its advice is never repeated
        raise UserError(unreadable_checkpoint(path, err)) from None


def state_dict_of(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's state dict, or a one-line error naming the file."""
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{path} holds no state_dict; pass a checkpoint written by train.py")
    return state


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Initialise ``module`` from a checkpoint's state dict, refusing mismatched networks."""
    state = state_dict_of(read_checkpoint(path), path)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
            if keys
        )
        raise UserError(
            f"checkpoint {path} does not match the configured network ({detail}); "
            "use the same model= and data= as the run that wrote it"
        )
    module.load_state_dict(state)


def load_state(module: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Strict ``load_state_dict`` whose failure (a network changed since the run) is one line."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0]
        raise UserError(
            f"checkpoint {path} does not fit the network it names ({detail}); "
            "was it written by another version of the model code?"
        ) from None


def objective_of(ckpt: dict[str, Any], path: str | Path) -> dict[str, str]:
    """The ``{"name", "target"}`` record of the objective that trained the checkpoint; UserError if none."""
    record = ckpt.get(OBJECTIVE_KEY)
    if not isinstance(record, dict) or "target" not in record:
        raise UserError(
            f"{path} records no training objective (written by an older train.py or another tool); "
            "retrain it with train.py"
        )
    return record
