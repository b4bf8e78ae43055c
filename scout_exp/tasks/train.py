"""The ``train`` task: compose data, model, trainer and loggers from the config, fit, summarise."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig

from scout_exp.checkpoint import load_weights
from scout_exp.config import instantiate, instantiate_group, save_resolved_config, to_container
from scout_exp.data.transforms import InputSpec
from scout_exp.errors import Interrupted, UserError
from scout_exp.heads import create_head
from scout_exp.io import save_json
from scout_exp.manifest import run_manifest, stage
from scout_exp.mirror import mirror_run
from scout_exp.models import resolve_model_config
from scout_exp.training.callbacks import TrainThroughput
from scout_exp.training.figures import save_samples_figure
from scout_exp.training.objectives import RecordObjective

log = logging.getLogger(__name__)
#: ckpt_path values that Lightning resolves itself
LIGHTNING_CKPT_KEYWORDS = ("best", "last", "hpc", "registry")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the configured classifier with the configured objective; return (and write) the run's summary.json.

    Writes under ``cfg.paths.output_dir`` (the Hydra run directory of train.py). Raises UserError when
    the confidence head needs another objective than the configured one.
    """
    start = time.perf_counter()
    out = Path(cfg.paths.output_dir)
    head = create_head(cfg.head.name)
    if head.objective is not None and cfg.objective.name not in (head.objective, *head.also_trained_by):
        raise UserError(
            f"head={cfg.head.name} is trained by objective={head.objective}, not objective={cfg.objective.name}; "
            f"drop objective= or pass objective={head.objective}"
        )
    save_resolved_config(cfg, out / "config_resolved.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    with stage("setup"):
        model_cfg = resolve_model_config(to_container(cfg.model))
        datamodule = instantiate(cfg.data, input_spec=InputSpec.from_config(model_cfg["input"]))
        datamodule.setup("fit")
        module = build_module(cfg, datamodule.num_classes)
    loggers = instantiate_group(cfg.get("logger"))
    callbacks = [
        c
        for c in instantiate_group(cfg.get("callbacks"))  # nothing to monitor into without a logger
        if loggers or not isinstance(c, LearningRateMonitor)
    ]
    callbacks.append(RecordObjective(cfg.objective.name))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        log.info(
            "training %s (%.1f M parameters) with objective=%s on %d %s images (%d identities), %s, precision %s -> %s",
            cfg.model.name,
            sum(p.numel() for p in module.parameters()) / 1e6,
            cfg.objective.name,
            len(datamodule.splits["train"]),
            HydraConfig.get().runtime.choices.get("data"),
            datamodule.num_classes,
            trainer.strategy.root_device,
            trainer.precision,
            out,
        )

    if trainer.is_global_zero:
        figure = save_samples_figure(datamodule, out / "figures" / "samples.png", cfg.figure_samples)
        mirror_run(loggers, config=to_container(cfg), images={"samples": [str(figure)] if figure else []})

    if cfg.ckpt_path and str(cfg.ckpt_path) not in LIGHTNING_CKPT_KEYWORDS:
        if "://" in str(cfg.ckpt_path):
            raise UserError(f"ckpt_path must be a local .ckpt file, got {cfg.ckpt_path}")
        load_weights(module, cfg.ckpt_path)  # one line for a missing, corrupt or mismatched checkpoint
    elif not cfg.train:
        raise UserError("train=false evaluates a trained network: pass ckpt_path=<run>/checkpoints/last.ckpt")
    if cfg.train:
        try:
            with stage("fit"):
                trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        except SystemExit:  # Lightning's exit on SIGTERM (SIGTERMException) and after Ctrl+C
            if not trainer.interrupted:
                raise
            _interrupted(cfg, trainer, datamodule, callbacks, start, loggers)
    else:
        with stage("validate"):
            trainer.validate(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    summary = _summary(cfg, trainer, datamodule, callbacks, start)
    if cfg.test:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")  # none when nothing was validated
        with stage("test"):
            trainer.test(module, datamodule=datamodule, ckpt_path=(best or None) if cfg.train else cfg.ckpt_path)
        summary.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test_")})
    with stage("final_metrics"):
        final_metrics = getattr(module, "final_metrics", None)  # objectives with scores beyond val_acc
        summary.update(final_metrics(trainer, datamodule, out) if final_metrics else {})
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)

    if trainer.is_global_zero:
        save_json(summary, out / "summary.json")
        mirror_run(loggers, summary, config={"manifest": run_manifest()})
        log.info("summary: %s", summary)
    return summary


def _interrupted(
    cfg: DictConfig, trainer: pl.Trainer, datamodule: Any, callbacks: list[Any], start: float, loggers: list[Any]
) -> None:
    """Write ``summary.json`` with ``status: interrupted`` and raise :class:`Interrupted` (exit 143 / 130)."""
    signal_name, code = ("SIGTERM", 143) if trainer.received_sigterm else ("SIGINT", 130)
    summary = _summary(cfg, trainer, datamodule, callbacks, start)
    summary.update(status="interrupted", signal=signal_name)
    last = summary["last_checkpoint"]
    if trainer.is_global_zero:
        save_json(summary, Path(cfg.paths.output_dir) / "summary.json")
        mirror_run(loggers, summary)
    resume = f"resume with ckpt_path={last}" if last else "no checkpoint was written"
    raise Interrupted(f"{signal_name} at epoch {trainer.current_epoch}, step {trainer.global_step}; {resume}", code)


def build_module(cfg: DictConfig, num_classes: int) -> pl.LightningModule:
    """The LightningModule of the chosen ``objective`` around the chosen ``model`` (its registered facts
    filled in where ``cfg.model`` leaves them null, :func:`scout_exp.models.resolve_model_config`)."""
    model_cfg = resolve_model_config(to_container(cfg.model))
    options = {k: v for k, v in to_container(cfg.objective).items() if k != "name"}
    return instantiate(
        options,
        _convert_="all",  # plain containers in the hyper-parameters: checkpoints load with weights_only
        model_name=model_cfg["name"],
        num_classes=num_classes,
        model_kwargs=model_cfg.get("kwargs") or {},
        target_layer=model_cfg.get("target_layer"),
        input_spec=model_cfg["input"],
        optimizer=instantiate(cfg.optimizer),
        scheduler=cfg.scheduler,
        init_from=model_cfg.get("init_from"),
    )


def _summary(
    cfg: DictConfig, trainer: pl.Trainer, datamodule: Any, callbacks: list[Any], start: float
) -> dict[str, Any]:
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    throughput = next((c for c in callbacks if isinstance(c, TrainThroughput)), None)
    checkpoint = trainer.checkpoint_callback
    return {
        "status": "ok",
        "task": "train",
        "model": cfg.model.name,
        "objective": cfg.objective.name,
        "head": cfg.head.name,
        "data": HydraConfig.get().runtime.choices.get("data"),
        "num_classes": int(datamodule.num_classes),
        "train_samples": int(len(datamodule.splits["train"])),
        "val_samples": int(len(datamodule.splits["val"])),
        "val_acc": metrics.get("val_acc"),
        "val_loss": metrics.get("val_loss"),
        "train_acc": metrics.get("train_acc"),
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "train_samples_per_s": round(throughput.samples_per_s, 2) if throughput else None,
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or None,
        "last_checkpoint": getattr(checkpoint, "last_model_path", None) or None,
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
