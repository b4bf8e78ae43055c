"""Lightning data modules selected by ``data=`` (configs/data/*.yaml)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from scout_exp.data.part_annotated import PartAnnotated
from scout_exp.data.splits import carve_calibration, split_indices
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError


class EpochShuffle(Sampler[int]):
    """A random order of ``n`` items that is a function of ``(seed, epoch)`` alone.

    ``torch.utils.data.RandomSampler`` draws each epoch's order from a generator whose state is
    not in Lightning's checkpoint, so a resumed run saw other orders than an uninterrupted one.
    Like ``DistributedSampler`` (which Lightning substitutes under DDP), the order is
    ``randperm(n)`` from a generator seeded with ``seed + epoch``; Lightning calls
    :meth:`set_epoch` at every epoch start, from the restored epoch count when resuming.
    ``skip`` items are left out of the first pass only: the part of the epoch a run resumed
    mid-epoch has already trained on (the length stays ``n``, as Lightning counts the epoch's
    batches from its own restored progress).
    """

    def __init__(self, n: int, seed: int, skip: int = 0) -> None:
        self.n, self.seed, self.epoch, self.skip = n, seed, 0, skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        skip, self.skip = self.skip, 0
        yield from torch.randperm(self.n, generator=generator).tolist()[skip:]


class FaceDataModule(pl.LightningDataModule):
    """Common part: splits, loaders and the backbone's preprocessing.

    ``calibration_fraction`` > 0 carves a ``calibration`` split out of the training part (stratified,
    the same share of every identity): images a classifier trained on ``train`` never sees, on which
    a post-hoc hardness predictor learns (``fit_split=calibration`` makes it the split that
    ``train_dataloader`` serves). The val and test splits do not depend on it.

    Subclasses implement :meth:`build` returning the full dataset, its labels and class count.
    A data set with part ground truth also sets ``part_data`` (None here) to its
    :class:`scout_exp.data.part_annotated.PartAnnotated` object, whose indices are the dataset's:
    that is what lets ``explain.py`` explain a split and score the part metrics.
    """

    def __init__(
        self,
        input_spec: InputSpec | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
        calibration_fraction: float = 0.0,
        fit_split: str = "train",
    ) -> None:
        super().__init__()
        self.input_spec = input_spec or InputSpec()
        self.preprocess = Preprocess(self.input_spec)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.calibration_fraction = calibration_fraction
        if fit_split not in ("train", "calibration"):
            raise UserError(f"data.fit_split must be train or calibration, not {fit_split!r}")
        self.fit_split = fit_split
        self.dataset: Dataset | None = None
        self.part_data: PartAnnotated | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.num_classes = 0
        self._resume_batches = 0

    def state_dict(self) -> dict[str, int]:
        """Checkpoint state: the batches of the current training epoch already done (0 at an epoch's end).

        Lightning restores its loop counters mid-epoch but restarts a plain DataLoader from its
        first batch; with this count the training sampler skips what was done, so a run stopped by
        a signal between two batches resumes exactly (single process; under DDP Lightning's
        ``DistributedSampler`` restarts the epoch and Lightning warns).
        """
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return {}
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)
        return {"train_batches_done": done if done < trainer.num_training_batches else 0}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_batches = int(state_dict.get("train_batches_done", 0))

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        """Return (dataset of (tensor, label), labels of every item, number of classes)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.dataset, labels, self.num_classes = self.build()
        train, val, test = split_indices(len(labels), self.val_fraction, self.test_fraction, self.seed, labels)
        self.splits = {"train": train, "val": val, "test": test}
        if self.calibration_fraction or self.fit_split == "calibration":
            self.splits["train"], self.splits["calibration"] = carve_calibration(
                train, labels, self.calibration_fraction, self.val_fraction + self.test_fraction, self.seed
            )

    def subset(self, split: str) -> Subset:
        """The dataset restricted to one split (``train``, ``val`` or ``test``)."""
        self.setup()
        if split not in self.splits:
            raise UserError(f"unknown split {split!r}; choose one of: {', '.join(self.splits)}")
        if self.dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() built no dataset")
        return Subset(self.dataset, self.splits[split].tolist())

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        subset = self.subset(split)
        if len(subset) == 0:
            raise UserError(f"the {split} split is empty; raise data.{split}_fraction or add data")
        distributed = self.trainer is not None and self.trainer.world_size > 1  # Lightning's DistributedSampler
        sampler = None
        if shuffle and not distributed:
            sampler = EpochShuffle(len(subset), self.seed, skip=self._resume_batches * self.batch_size)
            self._resume_batches = 0
        return DataLoader(
            subset,
            batch_size=self.batch_size,
            shuffle=shuffle and distributed,
            sampler=sampler,
            # worker seeds from the loader's own generator: iterating leaves the global RNG alone
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(subset) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.fit_split, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)


class FacePartsDataModule(FaceDataModule):
    """The built-in FaceParts benchmark, rendered on the fly (deterministic per index).

    ``with_annotations=True`` makes batches ``(x, y, landmarks, parts)`` (see ``FacePartsDataset``).
    """

    def __init__(
        self,
        num_identities: int = 20,
        images_per_identity: int = 250,
        image_size: int = 112,
        difficulty: float = 1.0,
        lookalikes: Sequence[int] = (1, 2, 3),
        with_annotations: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from scout_exp.data.faceparts import FaceParts

        self.with_annotations = with_annotations
        self.faceparts = FaceParts(
            num_identities=num_identities,
            images_per_identity=images_per_identity,
            image_size=image_size,
            difficulty=difficulty,
            seed=self.seed,
            lookalikes=tuple(lookalikes),
        )
        self.part_data = self.faceparts

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        from scout_exp.data.faceparts import FacePartsDataset

        fp = self.faceparts
        labels = np.array([fp.identity_of(i) for i in range(len(fp))])
        dataset = FacePartsDataset(fp, range(len(fp)), transform=self.preprocess, annotated=self.with_annotations)
        return dataset, labels, fp.num_identities


class ImageFolderDataModule(FaceDataModule):
    """One folder per identity (aligned CASIA-WebFace / VGGFace2 crops)."""

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        from scout_exp.data.image_folder import ImageFolderFaces

        dataset = ImageFolderFaces(self.root, transform=self.preprocess)
        labels = np.array([label for _, label in dataset.samples])
        return dataset, labels, len(dataset.classes)


class CasiaDatDataModule(FaceDataModule):
    """The Interpret_FR reference ``.dat`` pair (docs/method.md section 4), memory-mapped."""

    def __init__(self, images: str, file_list: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = Path(images)
        self.file_list = Path(file_list)

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        from scout_exp.data.casia_dat import CasiaDat

        dataset = CasiaDat(self.images, self.file_list, transform=self.preprocess)
        return dataset, np.asarray(dataset.labels), int(dataset.num_classes)
