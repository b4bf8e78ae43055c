"""The part-annotated data protocol: what a data set with part ground truth gives the explain task.

A data set that implements :class:`PartAnnotated` can be explained by split (``split=val``: pairs of
look-alike identities, :func:`scout_exp.explain.pairs.split_pairs`) and scored with the part
metrics (``metrics=[parts]``; ``interventions`` as well when it has counterfactual renders). Its
:class:`scout_exp.data.datamodules.FaceDataModule` exposes it as ``part_data`` (None for data sets
without parts); the images of a split are the datamodule's ``splits[split]`` indices. FaceParts
(:class:`scout_exp.data.faceparts.FaceParts`) is the built-in implementation; docs/data.md,
"Adding a data set with part ground truth", lists the members.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from scout_exp.errors import UserError

__all__ = ["PartAnnotated", "PartSample", "require_counterfactuals"]


class PartSample(NamedTuple):
    """One image with its part ground truth.

    ``image``: uint8 RGB (H, W, 3), what the recogniser's preprocessing reads. ``part_map``: signed
    integer (H, W), same H and W: ``k`` puts the pixel in part ``part_names[k]``, -1 outside every
    part (background, an occluder).
    """

    image: np.ndarray
    part_map: np.ndarray


@runtime_checkable
class PartAnnotated(Protocol):
    """A data set of ``len(self)`` face images (indices ``0 .. len - 1``) with per-pixel part ground truth.

    Implement every member (a structural match is enough: ``isinstance(obj, PartAnnotated)``), or
    subclass this protocol to inherit ``has_counterfactuals = False`` and a :meth:`counterfactual`
    that refuses: such a data set is scored with ``metrics=[parts]``, and ``interventions`` stops
    with a one-line error.

    ``part_names``: the P part names, in the order of the part-map values and of the
    :meth:`parts_differ` entries. ``has_counterfactuals``: whether :meth:`counterfactual` renders
    (what the ``interventions`` metric needs).
    """

    part_names: tuple[str, ...]
    has_counterfactuals: bool = False

    def __len__(self) -> int:
        """Number of images."""
        ...

    def identity_of(self, index: int) -> int:
        """Identity (class id, ``0 .. num_classes - 1``, as the datamodule labels it) of image ``index``."""
        ...

    def lookalikes(self, identity: int) -> list[int]:
        """Identities to contrast ``identity`` with first (the hardest to tell apart), in turn; may be empty.

        Split pairs take them in turn; an image whose look-alikes are not in the split is paired
        with the identity that differs from its own in the fewest parts.
        """
        ...

    def parts_differ(self, a: int, b: int) -> np.ndarray:
        """(P,) bool: whether part ``part_names[k]`` differs between identities ``a`` and ``b``
        (the ground truth of "why a, not b"). UserError for an identity out of range."""
        ...

    def part_sample(self, index: int) -> PartSample:
        """Image ``index`` and its (H, W) part map (:class:`PartSample`); IndexError out of range."""
        ...

    def counterfactual(self, index: int, part: int, identity: int) -> np.ndarray:
        """uint8 RGB (H, W, 3): image ``index`` with part ``part_names[part]`` switched to ``identity``'s,
        all else (pose, light, background) unchanged. Only when ``has_counterfactuals``; else UserError."""
        raise UserError(
            f"{type(self).__name__} has no counterfactual renders (image i with one part switched to another "
            "identity's); score it with metrics=[parts]"
        )


def require_counterfactuals(data: PartAnnotated, name: str) -> None:
    """UserError (one line, naming the data set as ``name``) unless ``data`` has counterfactual renders."""
    if not data.has_counterfactuals:
        raise UserError(
            f"metric 'interventions' switches parts to another identity's and {name} has no counterfactual "
            "renders; score it with metrics=[parts] (or use data=faceparts)"
        )
