"""Training objectives (``configs/objective/``): what wrote a checkpoint, and loading it back.

An objective is a LightningModule named by ``configs/objective/<name>.yaml`` (``name`` and
``module._target_``). ``train.py`` records the objective in every checkpoint it writes
(:class:`RecordObjective`); :func:`load_trained` rebuilds the module from that record with
Lightning's own ``load_from_checkpoint`` (``weights_only=True``). So a new objective, such as a
margin-softmax module, is one module plus one config: nothing here lists the objectives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl

from scout_exp.checkpoint import OBJECTIVE_KEY, objective_of, read_checkpoint
from scout_exp.errors import UserError

#: objective classes are imported from inside this package only (a checkpoint names its class)
TRUSTED_PREFIX = "scout_exp."


class RecordObjective(pl.Callback):
    """Write ``{"name", "target"}`` of the objective into every checkpoint (:data:`OBJECTIVE_KEY`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        cls = type(pl_module)
        checkpoint[OBJECTIVE_KEY] = {"name": self.name, "target": f"{cls.__module__}.{cls.__qualname__}"}


def load_trained(path: str | Path) -> tuple[pl.LightningModule, str]:
    """The LightningModule that wrote ``path``, in eval mode on the CPU, and its objective's name.

    Raises UserError for a missing, unreadable or unrecorded checkpoint, or one whose network no
    longer fits its hyper-parameters.
    """
    ckpt = read_checkpoint(path)
    record = objective_of(ckpt, path)
    target = str(record["target"])
    if not target.startswith(TRUSTED_PREFIX):
        raise UserError(f"{path} names objective class {target!r} outside scout_exp; refusing to import it")
    try:
        cls = hydra.utils.get_class(target)
    except Exception:
        raise UserError(f"{path} was written by {target}, which this version of scout_exp lacks") from None
    if not issubclass(cls, pl.LightningModule):
        raise UserError(f"{path} names objective class {target!r}, which is not a LightningModule")
    hparams: dict[str, Any] = ckpt.get("hyper_parameters") or {}
    cleared = {k: None for k in getattr(cls, "INIT_KEYS", ()) if hparams.get(k)}
    try:
        module = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True, **cleared)
    except KeyError as err:
        raise UserError(
            f"{path} is not a Lightning checkpoint (no {err} entry); pass a .ckpt written by train.py"
        ) from None
    except RuntimeError as err:
        lines = str(err).strip().splitlines()
        detail = "; ".join(line.strip() for line in lines[1:3]) or (lines[0] if lines else type(err).__name__)
        raise UserError(
            f"checkpoint {path} does not fit the network it names ({detail}); "
            "was it written by another version of the model code?"
        ) from None
    return module.eval(), str(record.get("name", target))
