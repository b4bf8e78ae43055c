"""A recogniser from a train.py checkpoint, and the warning when it holds another network than ``model=``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, cast

from hydra.core.hydra_config import HydraConfig
from torch import nn

from scout_exp.data.transforms import InputSpec
from scout_exp.errors import UserError
from scout_exp.heads import ConfidenceHead
from scout_exp.models import resolve_model_config
from scout_exp.tasks.recogniser import Recogniser
from scout_exp.training.objectives import load_trained

log = logging.getLogger(__name__)


def from_checkpoint(path: Path, head: ConfidenceHead, layer: str | None = None) -> Recogniser:
    """Rebuild the network a train.py checkpoint holds (dispatching on the objective it records) and
    attach ``head`` to it (a hardness head takes the checkpoint's predictor, explained at ``layer``).

    A face embedder (an objective whose module has ``unseen_identities``, e.g. ``objective=arcface``)
    comes back as its own embedder, with the identities it never trained on.
    """
    module, _ = load_trained(path)
    network = module.hparams.get("model_name")
    # a checkpoint records what its config set; the backbone's registration fills what it left null
    target_layer, spec_cfg = module.hparams.get("target_layer"), module.hparams.get("input_spec") or {}
    if network is not None:
        facts = resolve_model_config({"name": network, "input": spec_cfg, "target_layer": target_layer})
        target_layer, spec_cfg = facts["target_layer"], facts["input"]
    spec = InputSpec.from_config(spec_cfg)
    model = cast(nn.Module, module.model).eval()  # every objective's module holds its network as .model
    unseen_identities = getattr(module, "unseen_identities", None)  # a face embedder's module has it
    if unseen_identities is not None:
        if head.needs_training():
            raise UserError(f"{head.needs_training()}; {path} holds a face embedder")
        return Recogniser(
            model,
            head,
            spec,
            target_layer,
            str(path),
            embedder=model,
            network=network,
            unseen_identities=unseen_identities(),
        )
    head.attach(module, layer or target_layer)
    return Recogniser(model, head, spec, target_layer, str(path), network=network)


def warn_other_network(configured: str, network: str | None, checkpoint: Any) -> None:
    """Say (one line) when ``model=`` was given on the command line but the checkpoint holds another network.

    The checkpoint's own network is used: its weights fit no other.
    """
    if network is None or network == configured:
        return
    try:
        chosen = any(o.split("=", 1)[0].lstrip("+~") == "model" for o in HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra run (the Python API): nothing was chosen on a command line
        chosen = False
    if chosen:
        message = (
            f"checkpoint {checkpoint} holds a {network}, not a {configured}; explaining the {network} (drop model=)"
        )
        log.warning(message)
        print(f"warning: {message}", file=sys.stderr)
