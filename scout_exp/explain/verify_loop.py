"""``mode=verify`` through the same Lightning predict loop and record writer as SCOUT explanations.

Wraps :class:`scout_exp.explain.verification.VerificationExplainer` with
:func:`scout_exp.explain.verification.explain_pairs` (probe, reference pairs) or
:func:`scout_exp.explain.verify_benchmark.explain_triplets` (FaceParts triplets): each predict batch
is handed to them as a one-batch dataset, so its records, figures and maps are written per batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import nn
from torch.utils.data import Dataset

from scout_exp.data.faceparts_triplets import TripletDataset
from scout_exp.explain.verification import VerificationExplainer, explain_pairs
from scout_exp.explain.verify_benchmark import explain_triplets


class _OneBatch(Dataset):
    """A collated predict batch seen as a dataset of its items (``pairs`` / ``triplets`` stay the full lists)."""

    def __init__(self, dataset: Dataset, batch: dict[str, Any]) -> None:
        self.preprocess, self.batch = dataset.preprocess, batch
        self.pairs = getattr(dataset, "pairs", None)
        self.triplets = getattr(dataset, "triplets", None)

    def __len__(self) -> int:
        return len(self.batch["index"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.batch.items()}


class VerifyModule(pl.LightningModule):
    """``predict_step`` returns ``(dataset index, record)`` of every pair (or triplet) of the batch."""

    def __init__(
        self,
        explainer: VerificationExplainer,
        dataset: Dataset,
        out_dir: Path,
        threshold: float | None,
        max_figures: int,
        save_maps: bool,
    ) -> None:
        super().__init__()
        self.explainer = explainer
        if isinstance(explainer.embedder, nn.Module):  # registered so that Lightning moves it to the device
            self.embedder = explainer.embedder
        self.dataset, self.out_dir = dataset, out_dir
        self.threshold, self.max_figures, self.save_maps = threshold, max_figures, save_maps

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[tuple[int, dict[str, Any]]]:
        view = _OneBatch(self.dataset, batch)
        settings = {"batch_size": len(view), "max_figures": self.max_figures, "save_maps": self.save_maps}
        if isinstance(self.dataset, TripletDataset):
            records = explain_triplets(self.explainer, view, self.out_dir, **settings)
        else:
            records = explain_pairs(self.explainer, view, self.out_dir, threshold=self.threshold, **settings)
        return list(zip(batch["index"].tolist(), records, strict=True))
