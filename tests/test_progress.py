"""LogProgress: one line per N% of a stage's batches, with ETA, when output is not a terminal."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from scout_exp.training.progress import LogProgress


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])


def test_one_line_per_tenth_of_the_batches_with_eta(caplog: pytest.LogCaptureFixture) -> None:
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, callbacks=[LogProgress(10, "explain")], enable_model_summary=False
    )
    loader = DataLoader(TensorDataset(torch.zeros(40, 2)), batch_size=2)  # 20 batches
    with caplog.at_level(logging.INFO, logger="scout_exp.progress"):
        trainer.predict(_Tiny(), loader, return_predictions=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "scout_exp.progress"]
    assert len(lines) == 10, lines
    assert lines[0].startswith("explain:  10% (2/20 batches)") and "ETA" in lines[0]
    assert lines[-1].startswith("explain: 100% (20/20 batches)")


def test_every_percent_is_checked() -> None:
    with pytest.raises(ValueError, match="every_percent"):
        LogProgress(0)
