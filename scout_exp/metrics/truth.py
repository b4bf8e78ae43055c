"""Ground truth of a FaceParts pair for the metrics: part map, differing parts and switched images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from scout_exp.data.faceparts import FACE_PARTS, FaceParts


@dataclass
class PartTruth:
    """One image's ground truth: (H, W) part indices into FACE_PARTS (-1: background/occluder),
    (P,) bool differing parts, and part index -> (C, H, W) image with that part switched."""

    part_map: Tensor
    discriminative: Tensor
    switched: dict[int, Tensor] = field(default_factory=dict)


def faceparts_truth(
    faceparts: FaceParts,
    index: int,
    counter_identity: int,
    size: tuple[int, int],
    preprocess: Callable[[np.ndarray], Tensor] | None = None,
    interventions: bool = False,
    labels: np.ndarray | None = None,
) -> PartTruth:
    """Ground truth for explaining FaceParts image ``index`` against ``counter_identity``.

    ``labels``: the image's (H, W) part labels (``FaceSample.parts``) when already rendered, else
    rendered here. The part map is brought to ``size`` (the explained tensor's H, W) with
    nearest-neighbour resizing. With ``interventions``, each differing part is switched to the
    counter identity's variant by ``FaceParts.render(index, swap=...)`` (same pose, light, clutter)
    and preprocessed.
    """
    if labels is None:
        labels = faceparts.render(int(index)).parts
    if labels.shape != tuple(size):
        labels = cv2.resize(labels, size[::-1], interpolation=cv2.INTER_NEAREST)
    part_map = labels.astype(np.int64) - 1
    part_map[part_map >= len(FACE_PARTS)] = -1
    diff = faceparts.differing_parts(faceparts.identity_of(int(index)), int(counter_identity))
    disc = torch.tensor([p in diff for p in FACE_PARTS])
    switched = {}
    if interventions and preprocess is not None:
        for p in diff:
            switched[FACE_PARTS.index(p)] = preprocess(
                faceparts.render(int(index), swap={p: int(counter_identity)}).image
            )
    return PartTruth(torch.from_numpy(part_map), disc, switched)
