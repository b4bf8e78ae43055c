"""The face classifier as a LightningModule: registered backbone + identity layer, cross-entropy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from scout_exp.checkpoint import load_weights
from scout_exp.errors import UserError
from scout_exp.models import create_model

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class ClassifierModule(pl.LightningModule):
    """Backbone from the registry trained with cross-entropy on identity labels.

    The hyper-parameters saved in the checkpoint (model name and options, class count, target
    layer, input spec) are enough for ``explain.py`` to rebuild the network from the file alone
    (:func:`scout_exp.training.objectives.load_trained`); hyper-parameters named in ``INIT_KEYS``
    point at other checkpoints to start from and are cleared when a trained module is loaded.
    """

    INIT_KEYS: tuple[str, ...] = ("init_from",)

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
        self.scheduler_name = scheduler
        self.model = create_model(model_name, num_classes=num_classes, **(model_kwargs or {}))
        self.optimizer_factory = optimizer
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        if init_from:
            load_weights(self, init_from)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        # the loss; None is for subclasses that optimise manually (HardnessModule)
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
        if self.scheduler_name == "none":
            return None
        if self.scheduler_name != "cosine":
            raise UserError(f"unknown scheduler {self.scheduler_name!r}; choose cosine or none")
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
