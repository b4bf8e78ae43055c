"""A callback that sends the training process a signal at a chosen batch, as a cluster's scheduler would."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning.pytorch as pl


class SendSignal(pl.Callback):
    """Send ``signal_name`` (``SIGTERM`` or ``SIGINT``) to this process after training batch ``at_step``."""

    def __init__(self, at_step: int, signal_name: str = "SIGTERM") -> None:
        self.at_step = at_step
        self.signum = signal.Signals[signal_name]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)
