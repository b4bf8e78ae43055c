"""Callbacks that Lightning does not ship in the form summary.json needs."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl


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
