"""(probe, mate, non-mate) triplets on FaceParts with exact ground truth: the inpainting game.

After the inpainting game of Williford et al. (ECCV 2020; docs/verification.md): the probe and the
mate are two images of one identity; the non-mate is the *mate re-rendered* with one facial part
switched to another identity's variant (:meth:`FaceParts.render` with ``swap``), same pose, light,
noise and clutter. Only the switched part differs between mate and non-mate, so it is the exact
ground truth of "what makes the non-mate a different person": a map of different evidence on the
non-mate should fall on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from scout_exp.data.faceparts import FaceParts
from scout_exp.errors import UserError

#: inner facial regions a triplet may switch (the inpainting game's eyes, brows, nose and mouth)
SWAP_PARTS = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth")


@dataclass(frozen=True)
class Triplet:
    """Sample indices of probe and mate (one identity), the switched part and the donor identity."""

    probe: int
    mate: int
    part: str
    donor: int
    name: str = ""


def render_triplet(fp: FaceParts, t: Triplet) -> tuple[Any, Any, Any]:
    """The probe, mate and non-mate :class:`FaceSample` of ``t``; one-line error when mate and non-mate are identical."""
    if fp.identity_of(t.probe) != fp.identity_of(t.mate):
        raise UserError(f"triplet {t.name}: probe {t.probe} and mate {t.mate} are different identities")
    mate = fp.render(t.mate)
    non_mate = fp.render(t.mate, swap={t.part: t.donor})
    if np.array_equal(mate.image, non_mate.image):
        raise UserError(
            f"triplet {t.name}: mate and non-mate are identical (identity {t.donor}'s {t.part} is the same variant, "
            "or the part is hidden); choose another donor identity or part"
        )
    return fp.render(t.probe), mate, non_mate


def make_triplets(
    fp: FaceParts, indices: Sequence[int], count: int, parts: Sequence[str] = SWAP_PARTS, seed: int = 0
) -> list[Triplet]:
    """``count`` triplets from the samples ``indices``; parts cycle through ``parts``.

    Probe and mate are two random samples of one identity (among ``indices``); the donor is a
    random identity whose variant of the part differs. Candidates whose swap leaves the mate's
    pixels unchanged (a hidden part) are skipped.
    """
    unknown = [p for p in parts if p not in SWAP_PARTS]
    if unknown:
        raise UserError(f"cannot switch {', '.join(unknown)}; triplet parts are: {', '.join(SWAP_PARTS)}")
    by_identity: dict[int, list[int]] = {}
    for i in indices:
        by_identity.setdefault(fp.identity_of(int(i)), []).append(int(i))
    usable = sorted(a for a, items in by_identity.items() if len(items) >= 2)
    if not usable:
        raise UserError("no identity has two images in this split; raise data.images_per_identity")
    rng = np.random.default_rng([seed, 0x545249])
    triplets: list[Triplet] = []
    attempts = 0
    while len(triplets) < count:
        attempts += 1
        if attempts > 20 * count + 100:
            raise UserError(f"found only {len(triplets)} of {count} triplets with a visible switched part")
        part = parts[len(triplets) % len(parts)]
        a = int(rng.choice(usable))
        probe, mate = (int(v) for v in rng.choice(by_identity[a], size=2, replace=False))
        k = list(fp.variants(a)).index(part)
        donors = [b for b in range(fp.num_identities) if fp.codes[b][k] != fp.codes[a][k]]
        if not donors:
            continue
        t = Triplet(probe, mate, part, int(rng.choice(donors)), name=f"triplet_{len(triplets):03d}")
        if np.array_equal(fp.render(mate).image, fp.render(mate, swap={part: t.donor}).image):
            continue
        triplets.append(t)
    return triplets


class TripletDataset(Dataset):
    """Preprocessed triplets: dict(probe, mate, non_mate (C, S, S), truth (S, S) bool, index).

    ``truth`` marks the pixels of the switched part in the mate or the non-mate (the union of
    its old and new shapes), at the preprocessed size.
    """

    def __init__(self, fp: FaceParts, triplets: Sequence[Triplet], preprocess: Any) -> None:
        if not triplets:
            raise UserError("nothing to explain: the list of triplets is empty")
        self.fp, self.triplets, self.preprocess = fp, list(triplets), preprocess

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = self.triplets[i]
        probe, mate, non_mate = render_triplet(self.fp, t)
        x = [self.preprocess(s.image) for s in (probe, mate, non_mate)]
        truth = (self.fp.part_mask(mate, [t.part]) | self.fp.part_mask(non_mate, [t.part])).astype(np.uint8)
        size = x[0].shape[-1]
        if truth.shape[0] != size:
            truth = cv2.resize(truth, (size, size), interpolation=cv2.INTER_NEAREST)
        return {
            "probe": x[0],
            "mate": x[1],
            "non_mate": x[2],
            "truth": torch.from_numpy(truth.astype(bool)),
            "index": i,
        }
