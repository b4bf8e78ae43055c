"""Callbacks that Lightning does not ship in the form summary.json needs."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any
from weakref import proxy

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException


class TrainThroughput(pl.Callback):
    """Counts training samples and the wall time spent in training epochs.

    Lightning's ``ThroughputMonitor`` reports windowed rates to the logger; summary.json needs
    the whole-run figure (samples / seconds of training, validation excluded), hence this.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._start: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.samples += int(batch[0].shape[0]) * trainer.world_size

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pause(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.training:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pause(trainer)

    def _pause(self, trainer: pl.Trainer) -> None:
        """Stop the clock (validation time is not training time)."""
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``last.ckpt`` always the latest state, written atomically.

    Lightning 2.x rewrites ``last.ckpt`` only when a top-k checkpoint is saved, so with
    ``monitor=val_acc`` a run whose accuracy stopped improving kept an old ``last.ckpt`` and
    resuming "from last" lost epochs; here it is rewritten after every validation (and every
    training epoch without one), after the top-k checkpoint of that step. Lightning's own atomic
    save stages the file in the system temp folder and, on another filesystem, copies it under its
    final name (a full disk left a truncated checkpoint); here each file is written beside its
    destination and renamed.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            # a validation at the epoch's end is followed by on_train_epoch_end, where Lightning saves
            # the top-k checkpoint; a last.ckpt saved here first would mark the step as saved and skip it
            self._save_latest(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_latest(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """On SIGTERM or Ctrl+C (SIGINT), write ``last.ckpt`` at the last finished batch, resumable with ``ckpt_path``.

        Lightning raises its ``SIGTERMException`` (and re-raises ``KeyboardInterrupt``) between two
        batches, so the saved state is a consistent mid-epoch one; the data module's state holds how
        many batches of the epoch were done (:meth:`scout_exp.data.datamodules.FaceDataModule.state_dict`).
        """
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, SIGTERMException | KeyboardInterrupt):
            self._save_latest(trainer)

    def _save_latest(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        target = Path(filepath)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            trainer.save_checkpoint(tmp, self.save_weights_only)
            if trainer.is_global_zero:
                os.replace(tmp, target)
        finally:
            if trainer.is_global_zero and tmp.exists():
                tmp.unlink()
        trainer.strategy.barrier("ModelCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


class ExactResume(pl.Callback):
    """What Lightning's checkpoint lacks for a resumed run to equal an uninterrupted one.

    * The random states (torch CPU and CUDA, numpy, Python) go into every checkpoint and are
      restored at the start of the first resumed training epoch (at the start of training when a
      run resumes mid-epoch, from a checkpoint a signal wrote). Data order does not depend on
      them: the training sampler is a function of (seed, epoch)
      (:class:`scout_exp.data.datamodules.EpochShuffle`) and the loaders draw worker seeds from
      their own generators.
    * A learning-rate schedule that is a function of the step (``LambdaLR``, as
      :func:`scout_exp.training.module.warmup_cosine`) is re-evaluated at the restored step:
      the restored optimiser holds the old schedule's last rate (0 at the end of a cosine), which
      a run resumed with more epochs would otherwise use for its first step.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        if not isinstance(np_state, tuple):  # a dict when np.random.set_bit_generator gave it another generator
            raise RuntimeError("numpy's global random generator is not MT19937: its state cannot be saved")
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "gauss": float(np_state[4]),
            },
            "python": _to_lists(random.getstate()),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fit_loop.restarted_mid_epoch:  # no on_train_epoch_start follows for the resumed epoch
            self._restore_random_states()
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
                for group, rate in zip(scheduler.optimizer.param_groups, rates):
                    group["lr"] = rate
                scheduler._last_lr = rates

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_random_states()

    def _restore_random_states(self) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        np_state = state["numpy"]
        np.random.set_state(
            (
                "MT19937",
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["gauss"],
            )
        )
        random.setstate(_to_tuples(state["python"]))
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
