"""Reading image files as uint8 RGB: the one image reader of the package."""

from __future__ import annotations

import os

import cv2
import numpy as np

from scout_exp.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grayscale (H, W) / (H, W, 1), RGBA (H, W, 4; alpha dropped) or 16-bit images -> uint8 RGB (H, W, 3).

    Float images are read as 0-1 when their maximum is at most 1, else as 0-255.
    """
    arr = np.asarray(image)
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return np.ascontiguousarray(arr[..., :3])
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    raise UserError(f"image has shape {arr.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3); grayscale, RGBA and 16-bit files are converted.

    Bytes are read by numpy and decoded by ``cv2.imdecode`` so that non-ASCII paths work too. The
    image comes out as a viewer shows it: an EXIF Orientation tag (phones store photos sideways and
    set it) is applied, which ``IMREAD_ANYCOLOR | IMREAD_ANYDEPTH`` does and ``IMREAD_UNCHANGED``
    does not; an alpha channel is dropped, as :func:`to_rgb` would.
    """
    if not os.path.isfile(path):
        raise UserError(f"image {path} does not exist; check the path")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UserError(
            f"cannot read image {path} ({err.strerror or err}); check that it exists and is readable"
        ) from None
    decoded = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if decoded is None:
        raise UserError(f"image {path} is corrupt or not an image; remove it or re-export it")
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    elif decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return to_rgb(decoded)
