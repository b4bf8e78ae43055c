"""Data modules for face-recognition evaluation protocols: LFW-style pair lists and IJB-A templates.

A protocol module serves the protocol's images (each file once, in a fixed order) as ``(x, -1)``
in every split (there are no trained identities to classify) and scores the network's features
with :meth:`ProtocolDataModule.evaluate_features`, which the interpretable head's test stage calls.
Use them with a trained network: ``train=false test=true ckpt_path=<.ckpt> data=lfw_pairs ...``.
The identity count of the network is read from that checkpoint (``checkpoint: ${ckpt_path}``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from scout_exp.checkpoint import read_checkpoint
from scout_exp.data.datamodules import FaceDataModule
from scout_exp.data.images import read_rgb
from scout_exp.errors import UserError
from scout_exp.evaluation.templates import (
    TemplateSet,
    evaluate_templates,
    load_ijba_split,
    read_template_csv,
    read_template_pairs,
)
from scout_exp.evaluation.verification import eer, lfw_image_path, read_pairs, tar_at_far

FARS = (1e-1, 1e-2, 1e-3, 1e-4)


class ImageFiles(Dataset):
    """Listed image files as ``(transform(rgb), -1)``: protocol images carry no training label."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[np.ndarray], Any]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(read_rgb(self.paths[index])), -1


class ProtocolDataModule(FaceDataModule):
    """Common part: the file list (subclasses' :meth:`files`), every split = all files, and the
    class count of the network to evaluate, read from ``checkpoint``."""

    def __init__(self, checkpoint: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint = checkpoint

    def files(self) -> list[Path]:
        """The protocol's images, each once, in the order of the feature rows."""
        raise NotImplementedError

    def evaluate_features(self, features: torch.Tensor) -> dict[str, float]:
        """The protocol's metrics from the features (one row per :meth:`files` entry)."""
        raise NotImplementedError

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        paths = self.files()
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"{len(missing)} protocol image(s) are missing, e.g. {missing[0]}; check data.root")
        if not self.checkpoint:
            raise UserError(
                "a protocol data module evaluates a trained network: pass ckpt_path=<.ckpt> with train=false test=true"
            )
        num_classes = (read_checkpoint(self.checkpoint).get("hyper_parameters") or {}).get("num_classes")
        if not num_classes:
            raise UserError(f"{self.checkpoint} records no num_classes; is it a train.py checkpoint?")
        return ImageFiles(paths, self.preprocess), np.full(len(paths), -1), int(num_classes)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.dataset, labels, self.num_classes = self.build()
        every = np.arange(len(labels), dtype=np.int64)
        self.splits = {"train": every, "val": every, "test": every}


class LFWPairsDataModule(ProtocolDataModule):
    """LFW ``pairs.txt`` over ``root/<name>/<name>_<NNNN>.<ext>``: TAR at FAR and EER of the pairs'
    cosine similarities."""

    def __init__(self, root: str, pairs: str, ext: str = "jpg", fars: Sequence[float] = FARS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.pairs = read_pairs(pairs)
        self.ext = ext
        self.fars = tuple(float(f) for f in fars)
        self._index: dict[Path, int] = {}
        for p in self.pairs:
            for name, i in ((p.name1, p.index1), (p.name2, p.index2)):
                self._index.setdefault(lfw_image_path(self.root, name, i, ext), len(self._index))

    def files(self) -> list[Path]:
        return list(self._index)

    def evaluate_features(self, features: torch.Tensor) -> dict[str, float]:
        unit = torch.nn.functional.normalize(features.double(), dim=1)
        a = [self._index[lfw_image_path(self.root, p.name1, p.index1, self.ext)] for p in self.pairs]
        b = [self._index[lfw_image_path(self.root, p.name2, p.index2, self.ext)] for p in self.pairs]
        scores = (unit[a] * unit[b]).sum(dim=1).numpy()
        same = np.array([p.same for p in self.pairs])
        out = {f"tar@far={far:g}": tar for far, tar in tar_at_far(scores, same, self.fars).items()}
        out["eer"] = eer(scores, same)
        out["n_pairs"] = float(len(self.pairs))
        return out


class IJBATemplatesDataModule(ProtocolDataModule):
    """IJB-A style templates (``scout_exp.evaluation.templates``): verification on template pairs
    and closed-set identification of probe against gallery templates; FILE columns are relative to
    ``root``. Either ``protocol_root`` + ``split`` (IJB-A's layout) or the four files explicitly."""

    def __init__(
        self,
        root: str,
        protocol_root: str | None = None,
        split: int = 1,
        verify_metadata: str | None = None,
        verify_pairs: str | None = None,
        gallery: str | None = None,
        probe: str | None = None,
        reduce: str = "mean",
        fars: Sequence[float] = FARS,
        ranks: Sequence[int] = (1, 5),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        if protocol_root:
            self.sets: dict[str, Any] = load_ijba_split(protocol_root, split)
        else:
            self.sets = {
                "verify_set": read_template_csv(verify_metadata) if verify_metadata else None,
                "pairs": read_template_pairs(verify_pairs) if verify_pairs else None,
                "gallery": read_template_csv(gallery) if gallery else None,
                "probe": read_template_csv(probe) if probe else None,
            }
        if not any(v is not None for v in self.sets.values()):
            raise UserError(
                "no template files given: set data.protocol_root or data.verify_metadata/"
                "verify_pairs and/or data.gallery/probe"
            )
        self.reduce, self.fars, self.ranks = reduce, tuple(float(f) for f in fars), tuple(int(r) for r in ranks)
        names: dict[str, None] = {}
        for key in ("verify_set", "gallery", "probe"):
            templates: TemplateSet | None = self.sets[key]
            if templates is not None:
                names.update(dict.fromkeys(templates.files))
        self.names = list(names)

    def files(self) -> list[Path]:
        return [self.root / name for name in self.names]

    def evaluate_features(self, features: torch.Tensor) -> dict[str, float]:
        return evaluate_templates(
            features, self.names, **self.sets, reduce=self.reduce, fars=self.fars, ranks=self.ranks
        )
