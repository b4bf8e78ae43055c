"""Synthetic occlusion for the FAD loss (docs/method.md section 4) and part occluders for FaceParts.

Coordinates are continuous pixel coordinates ``(x, y)``: pixel (row v, column u) covers
``[u, u + 1) x [v, v + 1)`` and its centre is ``(u + 0.5, v + 0.5)``. A 32x12 occluder with
top-left ``(x0, y0)`` on the reference face therefore covers columns ``x0 .. x0 + 31`` and rows
``y0 .. y0 + 11`` when the image is the reference frame itself.

The reference code warps the rectangle's corners through a 68-landmark triangulation of the face
(piecewise affine); we use one least-squares similarity (5 landmarks) or affine (68 landmarks)
transform per image, which needs no triangulation file and is exact for aligned crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from scout_exp.errors import UserError

if TYPE_CHECKING:
    from typing_extensions import TypeIs

REFERENCE_LANDMARKS_110 = torch.tensor(
    [
        [39.8240, 51.3111],  # eye on the image's left
        [70.0273, 51.1441],  # eye on the image's right
        [55.0216, 68.4885],  # nose tip
        [42.6137, 86.1704],  # mouth corner, image left
        [67.6256, 86.0321],  # mouth corner, image right
    ]
)
"""5-point frontal template in the 110x110 frame.

Source: the widely used InsightFace/ArcFace 112x112 alignment template (Deng et al., CVPR 2019:
(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
(70.7299, 92.2041)) scaled by 96/112 into the 96x96 crop and shifted by 7 px, the offset of the
centre 96x96 crop in the 110x110 frame. This agrees with the reference code's fixed occluder
positions in the 96 crop (eyes in rows 35-47, nose 55-67, mouth 68-80). The reference itself uses
a 68-point frontal face (``landmark68_7.mat``, not public in text form): pass ``reference=`` to
use another template.
"""

OCCLUDER_SIZE = (32, 12)
"""(width, height) of the occluder in reference pixels."""
OCCLUDER_X_RANGE = (11, 67)
OCCLUDER_Y_RANGE = (11, 87)
"""Inclusive ranges of the occluder's top-left corner in the 110x110 reference frame."""


def landmarks68_to_5(landmarks: torch.Tensor) -> torch.Tensor:
    """(..., 68, 2) iBUG-68 landmarks -> (..., 5, 2): eye centres (points 36-41, 42-47), nose tip
    (30), mouth corners (48, 54), in the order of :data:`REFERENCE_LANDMARKS_110`."""
    if landmarks.shape[-2:] != (68, 2):
        raise UserError(f"expected 68 landmarks of shape (..., 68, 2), got {tuple(landmarks.shape)}")
    return torch.stack(
        [
            landmarks[..., 36:42, :].mean(-2),
            landmarks[..., 42:48, :].mean(-2),
            landmarks[..., 30, :],
            landmarks[..., 48, :],
            landmarks[..., 54, :],
        ],
        dim=-2,
    )


def fit_transform(src: torch.Tensor, dst: torch.Tensor, kind: str = "similarity") -> torch.Tensor:
    """Least-squares 2x3 matrices (B, 2, 3) mapping points ``src`` (B, N, 2) onto ``dst`` (B, N, 2).

    ``kind`` is ``"similarity"`` (rotation, uniform scale, translation; Umeyama's problem solved as
    a linear least-squares in (a, b, tx, ty)) or ``"affine"``. Written here rather than with
    ``cv2.estimateAffinePartial2D`` because OpenCV's estimators are RANSAC/LMedS and per image.
    """
    src = src.to(torch.float64)
    dst = dst.to(torch.float64)
    b, n, _ = src.shape
    x, y = src[..., 0], src[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    if kind == "similarity":
        rows_x = torch.stack([x, -y, one, zero], dim=-1)
        rows_y = torch.stack([y, x, zero, one], dim=-1)
        design = torch.cat([rows_x, rows_y], dim=1)
        target = torch.cat([dst[..., 0], dst[..., 1]], dim=1).unsqueeze(-1)
        a, bb, tx, ty = torch.linalg.lstsq(design, target).solution.squeeze(-1).unbind(-1)
        return torch.stack([torch.stack([a, -bb, tx], -1), torch.stack([bb, a, ty], -1)], dim=1)
    if kind == "affine":
        design = torch.stack([x, y, one], dim=-1)
        return torch.linalg.lstsq(design, dst).solution.transpose(1, 2)
    raise UserError(f"unknown transform kind {kind!r}; use 'similarity' or 'affine'")


def apply_transform(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply (B, 2, 3) matrices to points (B, N, 2)."""
    points = points.to(matrix.dtype)
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, :, 2].unsqueeze(1)


def random_occluder_position(generator: torch.Generator | None = None) -> tuple[int, int]:
    """Top-left ``(x, y)`` drawn uniformly from :data:`OCCLUDER_X_RANGE` x :data:`OCCLUDER_Y_RANGE`."""
    x = int(torch.randint(OCCLUDER_X_RANGE[0], OCCLUDER_X_RANGE[1] + 1, (1,), generator=generator))
    y = int(torch.randint(OCCLUDER_Y_RANGE[0], OCCLUDER_Y_RANGE[1] + 1, (1,), generator=generator))
    return x, y


def _matched_landmarks(landmarks: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring image landmarks (B, N, 2) and the reference (M, 2) to the same point set."""
    if landmarks.dim() != 3 or landmarks.shape[-1] != 2:
        raise UserError(f"landmarks must be (B, N, 2), got {tuple(landmarks.shape)}")
    n, m = landmarks.shape[1], reference.shape[0]
    if n == 68 and m == 5:
        landmarks = landmarks68_to_5(landmarks)
    elif n != m:
        raise UserError(f"{n} image landmarks do not match the {m}-point reference; give 5 or 68 points")
    return landmarks, reference.to(landmarks).expand(landmarks.shape[0], -1, -1)


def occluder_masks(
    landmarks: torch.Tensor,
    image_size: tuple[int, int],
    position: tuple[int, int],
    size: tuple[int, int] = OCCLUDER_SIZE,
    reference: torch.Tensor | None = None,
    kind: str | None = None,
) -> torch.Tensor:
    """Boolean masks (B, H, W): pixels whose centre maps into the reference-frame rectangle.

    The transform image -> reference is fitted per image from its landmarks (B, N, 2; N = 5, or
    68, reduced to 5 unless ``reference`` has 68 points); ``kind`` defaults to similarity for 5
    points and affine otherwise. ``position`` is the rectangle's top-left, ``size`` (w, h).
    """
    reference = REFERENCE_LANDMARKS_110 if reference is None else torch.as_tensor(reference)
    lm, ref = _matched_landmarks(torch.as_tensor(landmarks), reference)
    kind = kind or ("similarity" if lm.shape[1] == 5 else "affine")
    to_ref = fit_transform(lm, ref, kind)
    h, w = image_size
    rows = torch.arange(h, dtype=torch.float64, device=lm.device) + 0.5
    cols = torch.arange(w, dtype=torch.float64, device=lm.device) + 0.5
    vv, uu = torch.meshgrid(rows, cols, indexing="ij")
    centres = torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=-1).expand(lm.shape[0], -1, -1)
    p = apply_transform(to_ref, centres)
    x0, y0 = position
    inside = (p[..., 0] >= x0) & (p[..., 0] < x0 + size[0]) & (p[..., 1] >= y0) & (p[..., 1] < y0 + size[1])
    return inside.reshape(-1, h, w)


def occlude_with_landmarks(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    position: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
    size: tuple[int, int] = OCCLUDER_SIZE,
    reference: torch.Tensor | None = None,
    kind: str | None = None,
    fill: float = -1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Black out the reference rectangle, warped to each image (B, C, H, W) through its landmarks.

    One position for the whole batch, random (:func:`random_occluder_position`) unless given.
    Landmarks are in each image's own pixel frame (subtract a crop's offset first). Returns the
    occluded copy (``fill`` = -1, black in [-1, 1] pixels) and the (B, H, W) masks.
    """
    if images.dim() != 4 or images.shape[0] != landmarks.shape[0]:
        raise UserError(
            f"images must be (B, C, H, W) with one landmark set each; got {tuple(images.shape)} "
            f"and {tuple(landmarks.shape)}"
        )
    position = position if position is not None else random_occluder_position(generator)
    image_size = (images.shape[-2], images.shape[-1])
    masks = occluder_masks(landmarks, image_size, position, size, reference, kind).to(images.device)
    return images.masked_fill(masks.unsqueeze(1), fill), masks


def _span(any_mask: torch.Tensor) -> torch.Tensor:
    """Along the last dim, True from the first to the last True (inclusive)."""
    as_int = any_mask.to(torch.uint8)
    after_first = as_int.cummax(dim=-1).values.bool()
    before_last = as_int.flip(-1).cummax(dim=-1).values.flip(-1).bool()
    return after_first & before_last


def _one_list_per_image(parts: Sequence[int] | Sequence[Sequence[int]]) -> TypeIs[Sequence[Sequence[int]]]:
    """Whether ``parts`` holds a list of part ids per image (else one list of ids for the whole batch)."""
    return bool(parts) and isinstance(parts[0], (list, tuple))


def occlude_parts(
    images: torch.Tensor,
    part_maps: torch.Tensor,
    parts: Sequence[int] | Sequence[Sequence[int]],
    fill: float = -1.0,
    mode: str = "bbox",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Occlude chosen parts: ``part_maps`` (B, H, W) integer labels (part id per pixel), ``parts``
    the ids to hide, the same for the batch or one list per image. ``mode="bbox"`` fills each
    part's bounding box, ``"mask"`` only its pixels. Returns the occluded images and (B, H, W) masks.
    """
    if part_maps.dim() != 3 or images.dim() != 4 or part_maps.shape[0] != images.shape[0]:
        raise UserError(f"part_maps must be (B, H, W) for images (B, C, H, W); got {tuple(part_maps.shape)}")
    if part_maps.shape[-2:] != images.shape[-2:]:
        raise UserError(
            f"part map size {tuple(part_maps.shape[-2:])} differs from image size {tuple(images.shape[-2:])}"
        )
    if mode not in ("bbox", "mask"):
        raise UserError(f"unknown part occlusion mode {mode!r}; use 'bbox' or 'mask'")
    b = images.shape[0]
    per_image = [list(p) for p in parts] if _one_list_per_image(parts) else [list(parts)] * b
    if len(per_image) != b:
        raise UserError(f"got {len(per_image)} part lists for {b} images")
    masks = torch.zeros(part_maps.shape, dtype=torch.bool, device=part_maps.device)
    for pid in sorted({p for ps in per_image for p in ps}):
        chosen = torch.tensor([pid in ps for ps in per_image], device=part_maps.device)
        region = (part_maps == pid) & chosen[:, None, None]
        if mode == "bbox":
            region = _span(region.any(dim=2)).unsqueeze(2) & _span(region.any(dim=1)).unsqueeze(1)
        masks |= region
    return images.masked_fill(masks.to(images.device).unsqueeze(1), fill), masks
