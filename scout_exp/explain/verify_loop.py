"""``mode=verify`` through the same Lightning predict loop and record writer as SCOUT explanations.

:func:`explain_pairs` explains (probe, reference) pairs with a
:class:`scout_exp.explain.verification.VerificationExplainer`, and
:func:`scout_exp.explain.verify_benchmark.explain_triplets` FaceParts triplets; each predict batch of
:class:`VerifyModule` is handed to them as a one-batch dataset, and their predictions (records, and
the figures and maps they ask for) go to the :class:`scout_exp.explain.writer.RecordWriter`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import Dataset

from scout_exp.data.faceparts_triplets import TripletDataset
from scout_exp.errors import UserError
from scout_exp.explain.pairs import PairDataset
from scout_exp.explain.verification import VerificationExplainer, embedder_device, image_size_maps, pair_record
from scout_exp.explain.verification_figures import save_verification_figure
from scout_exp.explain.verify_benchmark import explain_triplets
from scout_exp.explain.writer import Prediction
from scout_exp.io import save_npz


def explain_pairs(
    explainer: VerificationExplainer,
    dataset: Any,
    threshold: float | None = None,
    batch_size: int = 16,
    max_figures: int = 16,
    save_maps: bool = False,
) -> list[Prediction]:
    """Explain every pair of a :class:`scout_exp.explain.pairs.PairDataset`.

    Each :class:`Prediction` holds the pair's record (:func:`pair_record`, its image paths, and the
    names of its figure, for the first ``max_figures`` pairs, and of its maps when ``save_maps``) and
    the files to write. UserError when a pair has one image.
    """
    missing = [p.name for p in dataset.pairs if p.image_2 is None]
    if missing:
        raise UserError(f"mode=verify needs two images per pair; {', '.join(missing[:3])} has one")
    device = embedder_device(explainer.embedder)
    out = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        x1, x2 = batch["x1"].to(device), batch["x2"].to(device)
        e = explainer.explain(x1, x2)
        similar, different = image_size_maps(e, tuple(x1.shape[-2:]))
        for b, index in enumerate(batch["index"].tolist()):
            pair = dataset.pairs[index]
            record = {
                "pair": pair.name,
                "images": [str(pair.image_1), str(pair.image_2)],
                **pair_record(e, b, threshold),
            }
            item = Prediction(index, record)
            if index < max_figures:
                verdict = ""
                if "same_person" in record:
                    verdict = (
                        f", {'same person' if record['same_person'] else 'different people'} (threshold {threshold:g})"
                    )
                title = (
                    f"{pair.name}: cosine {record['cosine']:.3f}, distance {record['distance']:.3f}{verdict}; "
                    f"{explainer.description}"
                )
                record["figure"] = f"figures/{pair.name}_verify.png"
                item.files[record["figure"]] = partial(
                    save_verification_figure,
                    images=[dataset.preprocess.invert(x1[b]), dataset.preprocess.invert(x2[b])],
                    similar=list(similar[:, b]),
                    different=list(different[:, b]),
                    labels=[f"probe: {Path(str(pair.image_1)).name}", f"reference: {Path(str(pair.image_2)).name}"],
                    title=title,
                )
            if save_maps:
                record["maps"] = f"maps/{pair.name}_verify.npz"
                item.files[record["maps"]] = partial(
                    save_npz,
                    probe=similar[0, b] - different[0, b],
                    reference=similar[1, b] - different[1, b],
                    probe_similar=similar[0, b],
                    probe_different=different[0, b],
                    reference_similar=similar[1, b],
                    reference_different=different[1, b],
                )
            out.append(item)
    return out


class _OneBatch(Dataset):
    """A collated predict batch seen as a dataset of its items (``pairs`` / ``triplets`` stay the full lists)."""

    def __init__(self, dataset: PairDataset | TripletDataset, batch: dict[str, Any]) -> None:
        self.preprocess, self.batch = dataset.preprocess, batch
        self.pairs = getattr(dataset, "pairs", None)
        self.triplets = getattr(dataset, "triplets", None)

    def __len__(self) -> int:
        return len(self.batch["index"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {k: v[i] for k, v in self.batch.items()}


class VerifyModule(pl.LightningModule):
    """``predict_step`` returns the :class:`Prediction` of every pair (or triplet) of the batch."""

    def __init__(
        self,
        explainer: VerificationExplainer,
        dataset: PairDataset | TripletDataset,
        threshold: float | None,
        max_figures: int,
        save_maps: bool,
    ) -> None:
        super().__init__()
        self.explainer = explainer
        if isinstance(explainer.embedder, nn.Module):  # registered so that Lightning moves it to the device
            self.embedder = explainer.embedder
        self.dataset = dataset
        self.threshold, self.max_figures, self.save_maps = threshold, max_figures, save_maps

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[Prediction]:
        view = _OneBatch(self.dataset, batch)
        figures, maps = self.max_figures, self.save_maps
        if isinstance(self.dataset, TripletDataset):
            return explain_triplets(self.explainer, view, batch_size=len(view), max_figures=figures, save_maps=maps)
        return explain_pairs(
            self.explainer, view, self.threshold, batch_size=len(view), max_figures=figures, save_maps=maps
        )
