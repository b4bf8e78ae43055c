"""Safe loading of weight files that are pickles of a dict name -> numpy array.

The public VGGFace2 PyTorch weights (``resnet50_ft``, ``resnet50_scratch``; docs/method.md section 3)
are such pickles, written by Python 2 (load with ``encoding='latin1'``). Plain ``pickle.load``
would run any callable the file names, so :class:`_ArrayUnpickler` admits only the few globals
that rebuilding numpy arrays needs and refuses everything else before it is called.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scout_exp.errors import UserError

_MAX_LISTED = 4

# numpy's own array reconstructors, taken from what ndarray's reducers return so that no private
# module is imported here; numpy 1.x pickles name them under numpy.core, numpy 2.x under numpy._core.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Stand-in for ``_codecs.encode``: Python 3 writes bytes in protocol-2 pickles as ``encode(text, 'latin1')``.

    Only that codec is honoured, so a file cannot make the loader look up other codecs.
    """
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays need; any other one is a UserError."""

    def __init__(self, fh: Any, source: str) -> None:
        super().__init__(fh, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UserError(
                f"{self._source} refers to {module}.{name}, which a weight file of numpy arrays never "
                "needs; refusing to load it (the file may be malicious): use a pickle of a dict "
                "name -> numpy array"
            ) from None


def load_pickled_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a pickle of ``{name: numpy array}`` (e.g. VGGFace2 ``resnet50_ft.pkl``) without running code from it."""
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise UserError(f"weight file {source} does not exist; pass the path of the downloaded .pkl file")
    with open(file, "rb") as fh:
        if fh.read(2) == b"PK":
            raise UserError(
                f"{source} is a zip archive (e.g. a torch.save checkpoint), not a pickle of a dict "
                "name -> numpy array such as the VGGFace2 resnet50_ft.pkl"
            )
        fh.seek(0)
        try:
            obj = _ArrayUnpickler(fh, source).load()
        except UserError:
            raise
        except Exception as err:  # any decoding failure means a corrupt or foreign file
            raise UserError(
                f"{source} could not be unpickled ({type(err).__name__}: {' '.join(str(err).split())}); "
                "the file is corrupt or truncated: download it again"
            ) from None
    return _check_weight_dict(obj, source)


def _check_weight_dict(obj: Any, source: str) -> dict[str, np.ndarray]:
    """Return ``obj`` if it is a non-empty dict of str -> numeric ndarray, else raise UserError."""
    if not isinstance(obj, dict) or not obj:
        raise UserError(
            f"{source} holds a {type(obj).__name__}{' (empty)' if isinstance(obj, dict) else ''}, "
            "not a dict name -> numpy array; use a weight pickle such as resnet50_ft.pkl"
        )
    for key, value in obj.items():
        if not isinstance(key, str):
            raise UserError(f"{source} has a non-text key {key!r}; expected a dict name -> numpy array")
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            what = f"array of dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
            raise UserError(f"{source} maps {key!r} to a {what}; expected numeric numpy arrays only")
    return obj


def load_into(model: nn.Module, weights: dict[str, np.ndarray], source: str, hint: str | None = None) -> None:
    """Copy ``weights`` into ``model``'s parameters and buffers after checking every name and shape both ways.

    BatchNorm ``num_batches_tracked`` counters may be absent from ``weights`` (Caffe conversions
    carry none). Any other missing, unexpected or mis-shaped entry raises one UserError line
    listing the first few, followed by ``hint`` (how to fix it) when given.
    """
    state = model.state_dict()
    missing = [n for n in state if n not in weights and not n.endswith("num_batches_tracked")]
    unexpected = [n for n in weights if n not in state]
    mismatched = [
        f"{n} (model {tuple(state[n].shape)}, file {tuple(weights[n].shape)})"
        for n in weights
        if n in state and tuple(state[n].shape) != tuple(weights[n].shape)
    ]
    problems = [
        _listing(label, names)
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if names
    ]
    if problems:
        fix = hint or f"use a weight file saved from {type(model).__name__} with the same number of classes"
        raise UserError(f"{source} does not fit {type(model).__name__}: {'; '.join(problems)}; {fix}")
    with torch.no_grad():
        for name, array in weights.items():
            if not array.flags.writeable:
                array = array.copy()
            state[name].copy_(torch.from_numpy(array))


def _listing(label: str, names: list[str]) -> str:
    """``label`` with the first few ``names`` and how many more there are."""
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return f"{len(names)} {label}: {', '.join(names[:_MAX_LISTED])}{more}"
