"""What to explain: pairs of images (files, a CSV of pairs, or a data split) with optional class ids.

Image files may be raw photographs: with ``align=<template>`` each face is detected and aligned
(:class:`scout_exp.explain.faces.FaceLoader`) before preprocessing; ``sample:NAME`` names one of
the offline sample photos (:mod:`scout_exp.data.samples`).

Each pair (x1, x2) is explained both ways (SCOUT Eq. 5): why x1 is class_1 rather than class_2,
and why x2 is class_2 rather than class_1. Missing class ids default to the predictions:
class_1 = argmax on x1; class_2 = argmax on x2 (the runner-up when it equals class_1, or when
there is no second image).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from scout_exp.data.part_annotated import PartAnnotated
from scout_exp.data.samples import is_sample
from scout_exp.data.transforms import Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.faces import FaceLoader, check_image_spec

NO_CLASS = -1


@dataclass
class Pair:
    """One pair to explain. Images are file paths, or indices of a part-annotated data set (``part_data``)."""

    image_1: str | int
    image_2: str | int | None = None
    class_1: int | None = None
    class_2: int | None = None
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class PairDataset(Dataset):
    """Preprocessed pairs for the predict loop: dict(x1, x2, has_2, class_1, class_2, index).

    ``align`` (a template of :mod:`scout_exp.data.align`, or None) aligns file images first. With
    ``part_data`` (a :class:`PartAnnotated` data set; the pairs' images are its indices) the items
    also hold each image's (H, W) int64 part map (``parts_1``, ``parts_2``; -1 everywhere without a
    second image), rendered with the image, so the metrics need no second render.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        preprocess: Preprocess,
        part_data: PartAnnotated | None = None,
        align: str | None = None,
    ) -> None:
        if not pairs:
            raise UserError("nothing to explain: the list of pairs is empty")
        self.pairs = list(pairs)
        self.preprocess = preprocess
        self.part_data = part_data
        self.faces = FaceLoader(align)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        item: dict[str, Any] = {
            "has_2": pair.image_2 is not None,
            "class_1": NO_CLASS if pair.class_1 is None else int(pair.class_1),
            "class_2": NO_CLASS if pair.class_2 is None else int(pair.class_2),
            "index": i,
        }
        if self.part_data is not None:
            first = self.part_data.part_sample(int(pair.image_1))
            second = self.part_data.part_sample(int(pair.image_2)) if pair.image_2 is not None else None
            x1 = self.preprocess(first.image)
            item["parts_1"] = torch.from_numpy(np.asarray(first.part_map, dtype=np.int64))
            item["parts_2"] = (
                torch.from_numpy(np.asarray(second.part_map, dtype=np.int64))
                if second is not None
                else torch.full_like(item["parts_1"], -1)
            )
            x2 = self.preprocess(second.image) if second is not None else torch.zeros_like(x1)
        else:
            x1 = self.preprocess(self.faces(str(pair.image_1)))
            x2 = self.preprocess(self.faces(str(pair.image_2))) if pair.image_2 is not None else torch.zeros_like(x1)
        return item | {"x1": x1, "x2": x2}


def pairs_from_images(images: Sequence[str], classes: Sequence[int | None]) -> list[Pair]:
    """One pair from one or two image paths and up to two class ids."""
    if not 1 <= len(images) <= 2:
        raise UserError(f"images takes one or two paths, got {len(images)}")
    for path in images:
        check_image_spec(str(path))
    padded = list(classes) + [None] * (2 - len(classes))
    return [
        Pair(
            str(images[0]),
            str(images[1]) if len(images) == 2 else None,
            _opt_int(padded[0]),
            _opt_int(padded[1]),
            name="pair_000",
        )
    ]


def pairs_from_csv(path: str | Path) -> list[Pair]:
    """Pairs from a CSV with columns image_1, image_2 and optional class_1, class_2 (paths relative to the CSV)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pairs file {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: spreadsheets write a BOM
        reader = csv.DictReader(fh, skipinitialspace=True)
        if not reader.fieldnames or "image_1" not in reader.fieldnames:
            raise UserError(f"pairs file {path} needs a header with image_1[,image_2,class_1,class_2]")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    pairs = []
    for n, row in enumerate(rows):
        images = [row["image_1"]] + ([row["image_2"]] if row.get("image_2") else [])
        images = [str(p if Path(p).is_absolute() or is_sample(p) else path.parent / p) for p in images]
        try:
            found = pairs_from_images(images, [_opt_int(row.get("class_1")), _opt_int(row.get("class_2"))])[0]
        except UserError as err:
            raise UserError(f"{path} line {n + 2}: {err}") from None
        found.name = f"pair_{n:03d}"
        pairs.append(found)
    return pairs


def split_pairs(data: PartAnnotated, indices: Sequence[int], limit: int | None) -> list[Pair]:
    """Pairs of look-alike identities (the hardest to tell apart) from the images ``indices`` of a split.

    Each of the first ``limit`` (None: all) images in ``indices`` (indices of ``data``) is paired with an
    image (from ``indices``) of one of its look-alikes (``data.lookalikes``, taken in turn: on
    FaceParts a family's root is explained against every k of ``lookalike_ks``), or, without
    look-alikes in the split, of the identity differing from its own in the fewest parts. Class
    ids are the true identities and ``meta`` holds the names of the parts that really differ (the
    ground truth of the SCOUT protocol) and their number k. UserError for a split of fewer than
    two identities.
    """

    def differing(a: int, b: int) -> list[str]:
        return [name for name, d in zip(data.part_names, data.parts_differ(a, b)) if d]

    by_identity: dict[int, list[int]] = {}
    for i in indices:
        by_identity.setdefault(data.identity_of(int(i)), []).append(int(i))
    if len(by_identity) < 2:
        raise UserError("the split holds fewer than two identities; nothing to contrast")
    pairs = []
    turn: dict[int, int] = {}
    for n, i in enumerate(indices[: limit or len(indices)]):
        a = data.identity_of(int(i))
        alikes = [b for b in data.lookalikes(a) if b in by_identity]
        if alikes:
            b = alikes[turn.get(a, 0) % len(alikes)]
            turn[a] = turn.get(a, 0) + 1
        else:
            b = min((len(differing(a, b)), b) for b in by_identity if b != a)[1]
        j = by_identity[b][n % len(by_identity[b])]
        diff = differing(a, b)
        pairs.append(Pair(int(i), j, a, b, name=f"pair_{n:03d}", meta={"discriminative_parts": diff, "k": len(diff)}))
    return pairs


def _opt_int(value: Any) -> int | None:
    """A class id from the command line or a CSV cell: an int or a string of one (not 1.5, true or "1.0")."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise UserError(f"class id {value!r} is not an integer; class ids are whole numbers such as 0 or 3")


def check_classes(pairs: Sequence[Pair], num_classes: int) -> None:
    """Refuse class ids the recogniser does not have, naming the pair and the valid range."""
    for pair in pairs:
        if pair.class_1 is not None and pair.class_1 == pair.class_2:
            raise UserError(f"{pair.name}: class_1 and class_2 are both {pair.class_1}; they must differ")
        for cls in (pair.class_1, pair.class_2):
            if cls is not None and not 0 <= cls < num_classes:
                raise UserError(
                    f"{pair.name}: class id {cls} is out of range; the recogniser has "
                    f"{num_classes} classes (0..{num_classes - 1})"
                )
