"""The face classifier as a LightningModule: registered backbone + identity layer, cross-entropy."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from scout_exp.errors import UserError
from scout_exp.io import unreadable_checkpoint
from scout_exp.models import create_model

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class ClassifierModule(pl.LightningModule):
    """Backbone from the registry trained with cross-entropy on identity labels.

    The hyper-parameters saved in the checkpoint (model name and options, class count, target
    layer, input spec) are enough for ``explain.py`` to rebuild the network from the file alone.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        model_kwargs: dict[str, Any] | None = None,
        target_layer: str | None = None,
        input_spec: dict[str, Any] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: str = "cosine",
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.model = create_model(model_name, num_classes=num_classes, **(model_kwargs or {}))
        self.optimizer_factory = optimizer
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        if init_from:
            load_weights(self, init_from)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        metric = self.val_acc if stage == "val" else self.test_acc
        metric(logits, y)
        self.log(f"{stage}_loss", F.cross_entropy(logits, y), prog_bar=True, sync_dist=True)
        self.log(f"{stage}_acc", metric, prog_bar=True, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(self.parameters())
        schedule = self.schedule(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": schedule} if schedule else optimizer

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The configured optimiser (``optimizer=`` group) over ``params``."""
        factory = self.optimizer_factory or (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
        return factory(params)

    def schedule(self, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Step-wise warm-up + cosine schedule of ``optimizer`` over the run; None for ``scheduler=none``."""
        if self.hparams.scheduler == "none":
            return None
        if self.hparams.scheduler != "cosine":
            raise UserError(f"unknown scheduler {self.hparams.scheduler!r}; choose cosine or none")
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total)), "interval": "step"}


def warmup_cosine(total_steps: int, warmup: float = 0.05) -> Callable[[int], float]:
    """LR factor: linear warm-up over ``warmup`` of the steps, then cosine decay to 0.

    A plain function of the step (not OneCycleLR's stored step count), so a run resumed with
    more epochs stretches the schedule to its new length instead of failing.
    """
    warm = max(int(warmup * total_steps), 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min((step - warm) / max(total_steps - warm, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint safely (``weights_only=True``) with a clear error when unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the .ckpt written by train.py")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for corrupt or unsafe files; its advice is never repeated
        raise UserError(unreadable_checkpoint(path, err)) from None


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Initialise ``module`` from a checkpoint's state dict, refusing mismatched networks."""
    state = read_checkpoint(path).get("state_dict")
    if state is None:
        raise UserError(f"{path} holds no state_dict; is it a train.py checkpoint?")
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


def load_classifier(path: str | Path) -> ClassifierModule:
    """Rebuild a trained :class:`ClassifierModule` from its checkpoint alone, in eval mode."""
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters")
    if not hparams or "model_name" not in hparams:
        raise UserError(f"{path} is not a scout-exp classifier checkpoint (no model_name hyper-parameter)")
    # subclasses (hardness, interpretable FR) add options; their classifier is this module's ``model``
    accepted = set(inspect.signature(ClassifierModule.__init__).parameters) - {"self", "init_from"}
    module = ClassifierModule(**{k: v for k, v in hparams.items() if k in accepted})
    state = {k[len("model.") :]: v for k, v in state_dict_of(ckpt, path).items() if k.startswith("model.")}
    load_state(module.model, state, path)
    return module.eval()


def state_dict_of(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's state dict, or a one-line error naming the file."""
    state = ckpt.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{path} holds no state_dict; pass a checkpoint written by train.py")
    return state


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
