"""``mode=verify`` through the same Lightning predict loop and record writer as SCOUT explanations.

Wraps :class:`scout_exp.explain.verification.VerificationExplainer` and
:func:`scout_exp.explain.verification.explain_pairs` as they are: each predict batch is handed to
``explain_pairs`` as a one-batch dataset, so its records, figures and maps are written per batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import Dataset

from scout_exp.explain.pairs import PairDataset
from scout_exp.explain.verification import VerificationExplainer, explain_pairs


class _OneBatch(Dataset):
    """A collated predict batch seen as a dataset of its items (the pairs list stays the full one)."""

    def __init__(self, dataset: PairDataset, batch: dict[str, Any]) -> None:
        self.pairs, self.preprocess, self.batch = dataset.pairs, dataset.preprocess, batch

    def __len__(self) -> int:
        return len(self.batch["index"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.batch.items()}


class VerifyModule(pl.LightningModule):
    """``predict_step`` returns ``(dataset index, record)`` of every (probe, reference) pair of the batch."""

    def __init__(
        self,
        explainer: VerificationExplainer,
        dataset: PairDataset,
        out_dir: Path,
        threshold: float | None,
        max_figures: int,
        save_maps: bool,
    ) -> None:
        super().__init__()
        self.explainer = explainer
        self.embedder = explainer.embedder  # registered so that Lightning moves it to the device
        self.dataset, self.out_dir = dataset, out_dir
        self.threshold, self.max_figures, self.save_maps = threshold, max_figures, save_maps

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[tuple[int, dict[str, Any]]]:
        view = _OneBatch(self.dataset, batch)
        records = explain_pairs(
            self.explainer,
            view,
            self.out_dir,
            threshold=self.threshold,
            batch_size=len(view),
            max_figures=self.max_figures,
            save_maps=self.save_maps,
        )
        return list(zip(batch["index"].tolist(), records, strict=True))
