"""Post-hoc hardness predictor: learn a trained, frozen classifier's errors on images it never saw.

The joint training (:class:`~scout_exp.hardness.module.HardnessModule`) learns from training images,
where the classifier soon fits ``p(y)`` close to 1, so the predictor's target is almost always 0.
Here the classifier comes from a ``train.py`` checkpoint trained with a calibration split held out
(``data.calibration_fraction``); it is frozen (no gradients, eval mode: its weights and batch-norm
statistics stay bit-identical) and only the predictor learns, on that calibration split
(``data.fit_split=calibration``), as ConfidNet does on top of a trained classifier (Corbiere et al.,
NeurIPS 2019). Targets (``target``): ``hardness``, the ECCV 2018 loss against ``1 - p(y)``
(``predictor_loss`` bce or linear), or ``tcp``, ConfidNet's mean squared error between the
easiness ``1 - s^hp`` and the true-class probability ``p(y)``. The checkpoint has the joint module's
layout (``model.*``, ``predictor.*``), so ``explain.py head=hardness ckpt_path=...`` loads it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.hardness.losses import predictor_loss, true_class_probability
from scout_exp.hardness.module import HardnessModule

log = logging.getLogger(__name__)

TARGETS = ("hardness", "tcp")
#: data options that choose loaders, not images or splits: they may differ from the classifier's run
LOADER_KEYS = ("_target_", "batch_size", "num_workers", "fit_split", "with_annotations")


class PosthocHardnessModule(HardnessModule):
    """A frozen trained classifier (``self.model``) and a hardness predictor (``self.predictor``) trained alone.

    Built by ``train.py objective=hardness_posthoc objective.classifier_ckpt=<run>/checkpoints/last.ckpt``.
    ``trunk=shared``: an MLP on the frozen classifier's features; ``separate``: the predictor's own
    backbone, initialised from the classifier's and trained. Raises UserError for an unknown
    ``target``, or at fit without ``classifier_ckpt`` or when the data module does not serve
    the calibration split or the classifier's run used other data or splits.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        trunk: str = "shared",
        hidden: int = 128,
        dropout: float = 0.5,
        classifier_loss: str = "unweighted",
        predictor_loss: str = "bce",
        predictor_lr: float = 1e-3,
        predictor_weight_decay: float = 1e-4,
        classifier_ckpt: str | None = None,
        eval_split: str = "val",
        target: str = "hardness",
        **classifier: Any,
    ) -> None:
        if target not in TARGETS:
            raise UserError(f"unknown objective.target {target!r}; choose one of: {', '.join(TARGETS)}")
        super().__init__(
            model_name,
            num_classes,
            trunk=trunk,
            hidden=hidden,
            dropout=dropout,
            classifier_loss=classifier_loss,
            predictor_loss=predictor_loss,
            predictor_lr=predictor_lr,
            predictor_weight_decay=predictor_weight_decay,
            classifier_ckpt=classifier_ckpt,
            eval_split=eval_split,
            **classifier,
        )
        self.target_name = target
        self.automatic_optimization = True
        self.model.requires_grad_(False)
        self.model.eval()
        self.classifier_digest = state_digest(self.model)

    def train(self, mode: bool = True) -> PosthocHardnessModule:
        """Switch the predictor to ``mode``; the frozen classifier always stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def setup(self, stage: str) -> None:
        if stage == "fit":
            if not self.classifier_ckpt:  # cleared only when a trained checkpoint is loaded back
                raise UserError(
                    "post-hoc hardness training starts from a trained classifier: pass "
                    "objective.classifier_ckpt=<train.py run>/checkpoints/last.ckpt"
                )
            # Lightning's DataConnector sets trainer.datamodule; the Trainer class does not declare it
            check_calibration_data(self.trainer.datamodule, self.classifier_ckpt)  # type: ignore[attr-defined]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits, z = self._forward_both(x)  # the classifier's parameters need no grad: nothing flows into them
        loss = self.target_loss(z, logits.detach(), y)
        self.train_acc(logits, y)
        self.log("train_predictor_loss", loss, prog_bar=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def target_loss(self, z: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
        """The predictor's loss for logit ``z`` (B,): ECCV's against ``1 - p(y)`` or ConfidNet's MSE to ``p(y)``."""
        p_true = true_class_probability(logits, labels)
        if self.target_name == "tcp":
            return F.mse_loss(1 - torch.sigmoid(z.float()), p_true.float())
        return predictor_loss(self.predictor_loss_name, z, p_true)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(
            self.predictor.parameters(), lr=self.predictor_lr, weight_decay=self.predictor_weight_decay
        )
        schedule = self.schedule(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": schedule} if schedule else optimizer

    def final_metrics(self, trainer: pl.Trainer, datamodule: Any, out_dir: str | Path) -> dict[str, Any]:
        """The joint module's confidence metrics plus the calibration split's size and the frozen-classifier check.

        ``classifier_unchanged`` is True when the classifier's weights and buffers are bit-identical
        to those loaded from ``classifier_ckpt`` (SHA-256 of every tensor, ``classifier_sha256``).
        """
        result = super().final_metrics(trainer, datamodule, out_dir)
        digest = state_digest(self.model)
        result.update(
            {
                "calibration_samples": int(len(datamodule.splits.get("calibration", []))),
                "classifier_ckpt": str(self.classifier_ckpt),
                "classifier_sha256": digest,
                "classifier_unchanged": digest == self.classifier_digest,
            }
        )
        return result


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes of every parameter and buffer)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_calibration_data(datamodule: Any, classifier_ckpt: str | Path) -> None:
    """Refuse post-hoc training that would not learn on images unseen by the classifier.

    The data module must serve its ``calibration`` split for training, and the classifier's run
    (``config_resolved.yaml`` two folders above its checkpoint) must have used the same data and
    splits, calibration share included; without that file a warning says it cannot be checked.
    """
    if getattr(datamodule, "fit_split", None) != "calibration" or not len(datamodule.splits.get("calibration", [])):
        raise UserError(
            "post-hoc hardness training learns on a calibration split: set data.calibration_fraction=<share, "
            "e.g. 0.2> data.fit_split=calibration (experiment=hardness_posthoc sets both)"
        )
    config = Path(classifier_ckpt).resolve().parent.parent / "config_resolved.yaml"
    if not config.is_file():
        log.warning("no %s: cannot check that the classifier never saw the calibration split", config)
        return
    loaded = OmegaConf.load(config)
    data = loaded.get("data") if isinstance(loaded, DictConfig) else None
    container = OmegaConf.to_container(data, resolve=False) if isinstance(data, DictConfig) else {}
    trained: dict[Any, Any] = container if isinstance(container, dict) else {}
    differ = []
    for key, value in trained.items():
        if key in LOADER_KEYS:
            continue
        for holder in (datamodule, getattr(datamodule, "faceparts", None)):
            here = getattr(holder, key, None) if holder is not None else None
            if here is not None and not callable(here):
                if (list(here) if isinstance(here, tuple) else here) != value:
                    differ.append(f"data.{key}={value} there, {here} here")
                break
    if "calibration_fraction" not in trained:
        differ.append("data.calibration_fraction absent there (no calibration split held out)")
    if differ:
        raise UserError(
            f"the classifier {classifier_ckpt} was trained on other data or splits ({'; '.join(differ)}): "
            "train it with the same data options, calibration_fraction included, so it never sees the calibration split"
        )
