"""Joint training of a classifier and its hardness predictor (docs/method.md section 2, ECCV 2018).

Alternation (manual optimisation): every training batch first updates the classifier ``F``
with its own optimiser (hardness-weighted or plain CE; ``s^hp`` detached), then the predictor
``S`` with Adam (BCE or linear loss against ``p(y)`` from the same forward, detached). So each
batch serves one step of each network, and each step moves only its own network's parameters.
Lightning counts ``global_step`` per optimiser step, i.e. twice per batch. Under DDP each backward
reaches only one network, so it needs ``trainer.strategy=ddp_find_unused_parameters_true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric, SumMetric
from torchmetrics.classification import BinaryAUROC

from scout_exp.checkpoint import OBJECTIVE_KEY, load_weights, read_checkpoint
from scout_exp.errors import UserError
from scout_exp.hardness.figures import save_risk_coverage_figure
from scout_exp.hardness.losses import (
    CLASSIFIER_LOSSES,
    PREDICTOR_LOSSES,
    classifier_loss,
    predictor_loss,
    true_class_probability,
)
from scout_exp.hardness.metrics import evaluate_confidence
from scout_exp.heads.hardness import TRUNKS, HardnessPredictor, build_trunk
from scout_exp.heads.softmax import softmax_score
from scout_exp.mirror import mirror_run
from scout_exp.models import classifier_name, features_and_logits, get_classifier
from scout_exp.modes import frozen_eval
from scout_exp.training.module import ClassifierModule

EVAL_SPLITS = ("val", "test")


class HardnessModule(ClassifierModule):
    """A :class:`ClassifierModule` (``self.model``) trained jointly with ``self.predictor`` (s^hp).

    Built by ``train.py`` with the classifier's keyword arguments plus the options of
    ``configs/objective/hardness.yaml``. ``classifier_ckpt`` names a plain classifier checkpoint to
    start the classifier (and a separate predictor trunk) from; ``init_from`` (``model.init_from``)
    a hardness checkpoint to start the whole module from, or a classifier one used as ``classifier_ckpt``.
    ``trunk`` (``shared`` | ``separate``) has no default here: its one default is the YAML's.
    """

    INIT_KEYS = ("init_from", "classifier_ckpt")

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        trunk: str,
        hidden: int = 128,
        dropout: float = 0.5,
        classifier_loss: str = "weighted",
        predictor_loss: str = "bce",
        predictor_lr: float = 1e-3,
        predictor_weight_decay: float = 1e-4,
        classifier_ckpt: str | None = None,
        eval_split: str = "val",
        **classifier: Any,
    ) -> None:
        # ``classifier``: the other keyword arguments of ClassifierModule; init_from is applied here,
        # to the whole module, once it is built
        init_from = classifier.pop("init_from", None)
        super().__init__(model_name, num_classes, **classifier)
        self.save_hyperparameters(ignore=["optimizer"])
        self.hparams["init_from"] = init_from
        self.model_name = model_name
        self.classifier_loss_name, self.predictor_loss_name = classifier_loss, predictor_loss
        self.predictor_lr, self.predictor_weight_decay = predictor_lr, predictor_weight_decay
        self.classifier_ckpt, self.eval_split = classifier_ckpt, eval_split
        for option, value, choices in (
            ("trunk", trunk, TRUNKS),
            ("classifier_loss", classifier_loss, CLASSIFIER_LOSSES),
            ("predictor_loss", predictor_loss, PREDICTOR_LOSSES),
            ("eval_split", eval_split, EVAL_SPLITS),
        ):
            if value not in choices:
                raise UserError(f"unknown objective.{option} {value!r}; choose one of: {', '.join(choices)}")
        self.automatic_optimization = False
        whole_from = init_from if init_from and _is_hardness_checkpoint(init_from) else None
        classifier_ckpt = classifier_ckpt or (init_from if init_from and not whole_from else None)
        if classifier_ckpt:
            self._load_classifier_ckpt(classifier_ckpt)
        if trunk == "separate":
            predictor_trunk, feature_dim = build_trunk(model_name, num_classes, classifier.get("model_kwargs"))
            if classifier_ckpt:
                head = classifier_name(self.model) + "."
                own = {k: v for k, v in self.model.state_dict().items() if not k.startswith(head)}
                predictor_trunk.load_state_dict(own)
        else:
            predictor_trunk, feature_dim = None, get_classifier(self.model).in_features
        self.predictor = HardnessPredictor(feature_dim, hidden, dropout, trunk=predictor_trunk)
        self.error_auroc = nn.ModuleDict(
            {f"{stage}_{score}": BinaryAUROC() for stage in EVAL_SPLITS for score in ("hardness", "softmax")}
        )
        self.error_count = nn.ModuleDict({stage: SumMetric() for stage in EVAL_SPLITS})
        self.sample_count = nn.ModuleDict({stage: SumMetric() for stage in EVAL_SPLITS})
        if whole_from:
            load_weights(self, whole_from)

    def _load_classifier_ckpt(self, path: str) -> None:
        """Initialise ``self.model`` from a train.py classifier checkpoint; refuse any other kind."""
        if _is_hardness_checkpoint(path):
            raise UserError(
                f"{path} is a hardness checkpoint; pass it as model.init_from, not objective.classifier_ckpt"
            )
        hparams = read_checkpoint(path).get("hyper_parameters") or {}
        trained = hparams.get("model_name")
        if trained is not None and trained != self.model_name:
            raise UserError(
                f"classifier_ckpt {path} holds a {trained} classifier but model={self.model_name}; "
                f"use model={trained} or another checkpoint"
            )
        holder = nn.Module()
        holder.model = self.model
        load_weights(holder, path)

    def _forward_both(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Classifier logits and predictor logit ``z`` (s^hp = sigmoid(z)); shared trunk: one trunk pass."""
        if self.predictor.trunk is not None:
            return self.model(x), self.predictor.logit(x)
        features, logits = features_and_logits(self.model, x)
        return logits, self.predictor.logit(features.detach())

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)  # configure_optimizers returns two: Lightning hands back a list
        opt_classifier, opt_predictor = optimizers
        logits, z = self._forward_both(x)

        loss_f = classifier_loss(self.classifier_loss_name, logits, y, torch.sigmoid(z.detach()))
        opt_classifier.zero_grad()
        self.manual_backward(loss_f)
        opt_classifier.step()

        loss_s = predictor_loss(self.predictor_loss_name, z, true_class_probability(logits.detach(), y))
        opt_predictor.zero_grad()
        self.manual_backward(loss_s)
        opt_predictor.step()

        scheduler = self.lr_schedulers()
        assert not isinstance(scheduler, list)  # configure_optimizers returns at most one schedule
        if scheduler is not None:
            scheduler.step()
        self.train_acc(logits.detach(), y)
        self.log("train_loss", loss_f, prog_bar=True)
        self.log("train_predictor_loss", loss_s, prog_bar=True)
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        return None  # manual optimisation: the steps above are the whole update

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        x, y = batch
        logits, z = self._forward_both(x)
        metric = self.val_acc if stage == "val" else self.test_acc
        metric(logits, y)
        wrong = (logits.argmax(dim=1) != y).long()
        _metric(self.error_auroc, f"{stage}_hardness").update(torch.sigmoid(z.float()), wrong)
        _metric(self.error_auroc, f"{stage}_softmax").update(1 - softmax_score(logits.float()), wrong)
        _metric(self.error_count, stage).update(wrong.sum())
        _metric(self.sample_count, stage).update(wrong.numel())
        loss_s = predictor_loss(self.predictor_loss_name, z, true_class_probability(logits, y))
        self.log(f"{stage}_loss", F.cross_entropy(logits.float(), y), prog_bar=True, sync_dist=True)
        self.log(f"{stage}_predictor_loss", loss_s, sync_dist=True)
        self.log(f"{stage}_acc", metric, prog_bar=True, on_step=False, on_epoch=True)

    def _log_error_auroc(self, stage: str) -> None:
        """Log ``<stage>_hardness_auroc`` / ``<stage>_softmax_auroc`` (error detection) when errors and hits both occur."""
        errors, seen = (
            float(_metric(self.error_count, stage).compute()),
            float(_metric(self.sample_count, stage).compute()),
        )
        if 0 < errors < seen:
            for score in ("hardness", "softmax"):
                self.log(f"{stage}_{score}_auroc", _metric(self.error_auroc, f"{stage}_{score}").compute())
        for metric in (
            _metric(self.error_count, stage),
            _metric(self.sample_count, stage),
            _metric(self.error_auroc, f"{stage}_hardness"),
            _metric(self.error_auroc, f"{stage}_softmax"),
        ):
            metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_error_auroc("val")

    def on_test_epoch_end(self) -> None:
        self._log_error_auroc("test")

    def configure_optimizers(self) -> Any:
        opt_classifier = self.make_optimizer(self.model.parameters())
        opt_predictor = torch.optim.Adam(
            self.predictor.parameters(), lr=self.predictor_lr, weight_decay=self.predictor_weight_decay
        )
        schedule = self.schedule(opt_classifier)
        return ([opt_classifier, opt_predictor], [schedule]) if schedule else [opt_classifier, opt_predictor]

    @torch.no_grad()
    def collect_outputs(self, loader: Any) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, labels, s^hp) over ``loader`` in eval mode and float32, on the CPU."""
        logits, labels, hardness = [], [], []
        with frozen_eval(self):
            for x, y in loader:
                out, z = self._forward_both(x.to(self.device))
                logits.append(out.float().cpu())
                hardness.append(torch.sigmoid(z.float()).cpu())
                labels.append(y.cpu())
        return torch.cat(logits), torch.cat(labels), torch.cat(hardness)

    def final_metrics(self, trainer: pl.Trainer, datamodule: Any, out_dir: str | Path) -> dict[str, Any]:
        """Accuracy and, for s^s, s^c and s^e = 1 - s^hp, error AUROC and AURC (+ softmax ECE); risk-coverage figure.

        Evaluated on ``eval_split`` (validation by default). Keys: ``<split>_acc``, ``auroc_<score>``,
        ``aurc_<score>``, ``aurc_oracle``, ``ece_softmax``, ``confidence_split``, ``confidence_errors``.
        An AUROC is None when the split holds no error (or no correct prediction).
        """
        split = self.eval_split
        loader = datamodule.val_dataloader() if split == "val" else datamodule.test_dataloader()
        logits, labels, hardness = self.collect_outputs(loader)
        report = evaluate_confidence(logits, labels, {"easiness": 1 - hardness})
        m = report.metrics
        result: dict[str, Any] = {
            f"{split}_acc": m["accuracy"],
            "confidence_split": split,
            "confidence_samples": m["samples"],
            "confidence_errors": m["errors"],
        }
        result.update({k: v for k, v in m.items() if k.startswith(("auroc_", "aurc_", "fpr95_", "ece_"))})
        if trainer.is_global_zero:
            title = f"{self.model_name}, {split} split: {m['samples']} samples, {m['errors']} errors"
            path = save_risk_coverage_figure(report.curves, m, Path(out_dir) / "figures" / "risk_coverage.png", title)
            mirror_run(trainer.loggers, images={"risk_coverage": [str(path)]})
        return result


def _metric(metrics: nn.ModuleDict, key: str) -> Metric:
    """``metrics[key]``: nn.ModuleDict types its items as plain Modules, these ones are torchmetrics Metrics."""
    return cast(Metric, metrics[key])


def _is_hardness_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` records ``objective=hardness`` (its objective class is this one); unrecorded: no."""
    record = read_checkpoint(path).get(OBJECTIVE_KEY) or {}
    return record.get("target") == f"{HardnessModule.__module__}.{HardnessModule.__qualname__}"
