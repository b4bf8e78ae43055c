"""Progress of every Lightning stage (fit, validate, test, predict) on a terminal and in a log file.

Rich's live bar (Lightning's ``RichProgressBar``) redraws one screen region; written to a file or
a pipe (``make demo > log``, a SLURM job's output) it prints nothing until the stage ends.
:func:`progress_bar` keeps Rich's bar on a terminal and otherwise gives :class:`LogProgress`,
which logs one line per ``every_percent`` percent of each stage's batches with the rate and the
estimated time left, as tqdm's ``mininterval`` and Lightning's ``log_every_n_steps`` do for logs.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from datetime import timedelta
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger("scout_exp.progress")


def progress_bar(every_percent: float = 10.0, predict_stage: str = "predict") -> ProgressBar:
    """Rich's live bar when stdout is a terminal, else :class:`LogProgress` (one log line per ``every_percent`` %).

    ``predict_stage`` names the predict stage in the log lines (``explain.py`` passes its mode).
    """
    return RichProgressBar() if sys.stdout.isatty() else LogProgress(every_percent, predict_stage)


class LogProgress(ProgressBar):
    """Log ``<stage> [epoch e/E]: p% (n/N batches), r batches/s, ETA h:mm:ss[, metrics]`` lines.

    A line is logged each time a stage passes another ``every_percent`` percent of its batches
    (and at its last batch); validation inside a training epoch logs only its end, with the
    epoch's metrics. Stages of unknown length (an iterable dataset) log every 100 batches.
    """

    def __init__(self, every_percent: float = 10.0, predict_stage: str = "predict") -> None:
        super().__init__()
        if not 0 < every_percent <= 100:
            raise ValueError(f"every_percent must be in (0, 100], got {every_percent}")
        self.every_percent, self.predict_stage = every_percent, predict_stage
        self._enabled = True
        self._start = 0.0
        self._next = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _begin(self) -> None:
        self._start, self._next = time.perf_counter(), self.every_percent

    def _step(self, stage: str, done: int, total: float, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        known = math.isfinite(total) and total > 0
        percent = 100.0 * done / total if known else 0.0
        if known and percent < self._next and done < total:
            return
        if not known and done % 100:
            return
        while known and self._next <= percent:
            self._next += self.every_percent
        elapsed = time.perf_counter() - self._start
        rate = done / elapsed if elapsed > 0 else float("inf")
        where = f"{stage} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}" if stage == "train" else stage
        line = f"{where}: {done} batches, {rate:.2f} batches/s"
        if known:
            eta = timedelta(seconds=round((total - done) / rate)) if rate > 0 else "?"
            line = f"{where}: {percent:3.0f}% ({done}/{int(total)} batches), {rate:.2f} batches/s, ETA {eta}"
        metrics = _metrics(self.get_metrics(trainer, pl_module), "train_") if stage == "train" else ""
        log.info("%s%s", line, metrics)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._step("train", batch_idx + 1, self.total_train_batches, trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        index: int = 0,
    ) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self._step("validate", batch_idx + 1, trainer.num_val_batches[index], trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting and self._enabled and trainer.is_global_zero and not trainer.sanity_checking:
            epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            log.info("validation after %s%s", epoch, _metrics(self.get_metrics(trainer, pl_module), "val_"))

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin()

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        index: int = 0,
    ) -> None:
        self._step("test", batch_idx + 1, trainer.num_test_batches[index], trainer, pl_module)

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._begin()

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        index: int = 0,
    ) -> None:
        self._step(self.predict_stage, batch_idx + 1, trainer.num_predict_batches[index], trainer, pl_module)


def _metrics(metrics: dict[str, Any], prefix: str) -> str:
    """``, name value, ...`` of the numeric metrics named ``prefix...`` that Lightning shows in its bar."""
    shown = [
        f"{name} {value:.4g}"
        for name, value in metrics.items()
        if name.startswith(prefix) and isinstance(value, int | float)
    ]
    return ", " + ", ".join(shown) if shown else ""
