"""Atomic output writers (a temporary file in the same folder, then rename), and safe-reading messages."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from scout_exp.plotting import pyplot

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, allow_nan=False, default=_json_default) + "\n")
    return Path(path)


def save_npz(path: str | os.PathLike[str], /, **arrays: np.ndarray) -> Path:
    """Write compressed arrays, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            # numpy's default, named: else mypy matches the arrays against this bool option
            np.savez_compressed(fh, allow_pickle=True, **arrays)
    return Path(path)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return Path(path)


def save_image(image_rgb: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save an RGB uint8 image as PNG, atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image_rgb[..., ::-1]))
    if not ok:
        raise RuntimeError(f"could not encode image for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: strict JSON, readable by any tool (undefined ratios stay visible)."""
    if isinstance(obj, np.floating):
        obj = float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def unreadable_checkpoint(path: str | os.PathLike[str], err: BaseException) -> str:
    """One line for a file ``torch.load(weights_only=True)`` refused: corrupt, not a checkpoint, or unsafe.

    torch's own message advises retrying with ``weights_only=False``, which would run whatever code
    the file holds; that advice is never passed on. A pickle that names a global torch does not
    allow is told apart; other failures (bad bytes, unknown opcodes) cannot be.
    """
    text = str(err)
    unsafe = "Unsupported global" in text or "allowed global" in text
    what = (
        "it holds Python objects, which are never loaded"
        if unsafe
        else "it is corrupt or truncated, or holds Python objects"
    )
    return (
        f"cannot read checkpoint {path}: not a checkpoint of this project or may be unsafe ({what}); "
        "pass a .ckpt written by train.py"
    )
