"""Ground truth of a pair for the metrics, from a part-annotated data set: part map, differing parts and
switched images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from scout_exp.data.part_annotated import PartAnnotated, require_counterfactuals


@dataclass
class PartTruth:
    """One image's ground truth: (H, W) int64 part indices into the data set's ``part_names`` (-1:
    outside every part), (P,) bool differing parts, and part index -> (C, H, W) image with that part
    switched."""

    part_map: Tensor
    discriminative: Tensor
    switched: dict[int, Tensor] = field(default_factory=dict)


def part_truth(
    data: PartAnnotated,
    index: int,
    counter_identity: int,
    size: tuple[int, int],
    preprocess: Callable[[np.ndarray], Tensor] | None = None,
    interventions: bool = False,
    part_map: np.ndarray | None = None,
) -> PartTruth:
    """Ground truth for explaining image ``index`` of ``data`` against ``counter_identity``.

    ``part_map``: the image's (H, W) part map (``data.part_sample(index).part_map``) when already
    rendered, else rendered here. It is brought to ``size`` (the explained tensor's H, W) with
    nearest-neighbour resizing. With ``interventions``, each differing part is switched to the
    counter identity's by ``data.counterfactual`` (same pose, light, clutter) and preprocessed;
    UserError when ``data`` has no counterfactual renders.
    """
    if interventions:
        require_counterfactuals(data, type(data).__name__)
    if part_map is None:
        part_map = data.part_sample(int(index)).part_map
    part_map = np.asarray(part_map, dtype=np.int64)
    if part_map.shape != tuple(size):  # cv2 resizes int32, not int64
        part_map = cv2.resize(part_map.astype(np.int32), size[::-1], interpolation=cv2.INTER_NEAREST).astype(np.int64)
    differ = np.asarray(data.parts_differ(data.identity_of(int(index)), int(counter_identity)), dtype=bool)
    switched = {}
    if interventions and preprocess is not None:
        for k in np.flatnonzero(differ).tolist():
            switched[k] = preprocess(data.counterfactual(int(index), k, int(counter_identity)))
    return PartTruth(torch.from_numpy(part_map), torch.from_numpy(differ), switched)
