"""Two real face photographs available offline (docs/method.md section 5), addressable as ``sample:NAME``.

``sample:grace_hopper`` is matplotlib's ``mpl-data/sample_data/grace_hopper.jpg``;
``sample:eileen_collins`` is scikit-image's ``skimage.data.astronaut()`` (NASA, public domain).
Wherever ``explain.py`` takes an image path (``images=[...]``, pairs CSVs, gallery identities)
it also takes one of these names, so the real-face run needs no files of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from scout_exp.data.images import read_rgb
from scout_exp.errors import UserError

SAMPLE_PREFIX = "sample:"


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    return read_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def _eileen_collins() -> np.ndarray:
    try:
        from skimage import data
    except ImportError:
        raise UserError(
            "sample:eileen_collins is scikit-image's astronaut image; install it with `pip install scikit-image`"
        ) from None
    return np.ascontiguousarray(data.astronaut())


SAMPLES: dict[str, Callable[[], np.ndarray]] = {
    "grace_hopper": _grace_hopper,
    "eileen_collins": _eileen_collins,
}


def is_sample(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a sample photo (``sample:NAME``) rather than a file."""
    return isinstance(spec, str) and spec.startswith(SAMPLE_PREFIX)


def sample_name(spec: str) -> str:
    """The NAME of ``sample:NAME``; unknown names are a :class:`UserError` listing the known ones."""
    name = spec[len(SAMPLE_PREFIX) :]
    if name not in SAMPLES:
        known = ", ".join(SAMPLE_PREFIX + n for n in SAMPLES)
        raise UserError(f"unknown sample image {spec!r}; choose one of: {known}")
    return name


def sample_image(spec: str) -> np.ndarray:
    """The uint8 RGB photo named by ``sample:NAME``."""
    return SAMPLES[sample_name(spec)]()
