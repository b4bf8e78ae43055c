"""Face alignment: MTCNN's 5 landmarks mapped onto a per-backbone template by a similarity transform.

Detector: ``facenet_pytorch.MTCNN`` 2.5.3 (weights ship in the wheel; docs/method.md section 5). Its
landmark order is: eye on the image's left, eye on the image's right, nose tip, mouth corner on
the left, mouth corner on the right. Templates (pixel coordinates in the output crop):

* ``dlib150`` (face descriptor net): the crop dlib's ``get_face_chip_details(shape, 150, 0.25)``
  makes, expressed for MTCNN's points: eye centres = mean of dlib's mean-face eye contours,
  nose tip = point 30, mouth corners = points 48/54 of dlib's mean face shape (``interpolation.h``);
* ``vggface2_224`` (VGGFace2 ResNet-50, docs/method.md section 3): the same mean face in a looser
  square (side 1.3 mean-face units, centre lifted to y = 0.45), matching SCOUT-Face's MTCNN box
  plus a 15 % margin (measured on the sample images: box width 1.0-1.2 units, centre y 0.44);
* ``arcface112`` (IResNet, AdaFace, MobileFaceNet, face ViTs, insightface ONNX packs): the
  standard 112x112 ArcFace five-point template itself;
* ``casia110`` (CASIA-Net, 110 then a 96 crop, docs/method.md section 4): the standard ArcFace
  112x112 five-point template scaled to 110 (the exact template of the CASIA ``.dat`` files is
  not published; this is the usual framing for such crops).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from scout_exp.data.images import IMAGE_EXTENSIONS, read_rgb, to_rgb
from scout_exp.errors import UserError, exit_on_user_error
from scout_exp.io import save_image, save_json

# dlib mean face shape (interpolation.h, points 17-67 in [0, 1]); only the points used here.
_DLIB_EYE_LEFT_X = (0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743)  # points 36-41
_DLIB_EYE_LEFT_Y = (0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077)
_DLIB_EYE_RIGHT_X = (0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335)  # points 42-47
_DLIB_EYE_RIGHT_Y = (0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099)
DLIB_MEAN_FACE_5 = np.array(
    [
        [np.mean(_DLIB_EYE_LEFT_X), np.mean(_DLIB_EYE_LEFT_Y)],
        [np.mean(_DLIB_EYE_RIGHT_X), np.mean(_DLIB_EYE_RIGHT_Y)],
        [0.490127, 0.515625],  # point 30, nose tip
        [0.254149, 0.780233],  # point 48, mouth corner
        [0.726104, 0.780233],  # point 54, mouth corner
    ]
)
"""MTCNN's five points on dlib's normalised mean face (x, y in mean-face units)."""

ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
"""The five-point template used for 112x112 ArcFace/InsightFace crops."""


def _mean_face_template(size: int, side: float, centre: tuple[float, float]) -> np.ndarray:
    """Mean-face points placed in a ``size`` crop showing a square of ``side`` units around ``centre``."""
    origin = np.asarray(centre) - side / 2.0
    return (DLIB_MEAN_FACE_5 - origin) / side * size


@dataclass(frozen=True)
class Template:
    """Output size and the five target landmark positions (pixels) of one backbone's crops."""

    size: int
    points: np.ndarray


TEMPLATES: dict[str, Template] = {
    # dlib padding 0.25: a square of 1 + 2 * 0.25 units centred on (0.5, 0.5)
    "dlib150": Template(150, _mean_face_template(150, 1.5, (0.5, 0.5))),
    "vggface2_224": Template(224, _mean_face_template(224, 1.3, (0.5, 0.45))),
    "casia110": Template(110, ARCFACE_112 * (110.0 / 112.0)),
    "arcface112": Template(112, ARCFACE_112),
}


#: MTCNN's smallest face (``min_face_size``): a smaller image cannot hold one (and its image
#: pyramid is empty, which makes facenet-pytorch 2.5.3 fail in ``torch.cat``)
MIN_IMAGE_SIDE = 20
#: longest side of the copy the detector sees: larger photos are detected on a downscaled copy
#: (MTCNN's image pyramid of a 100-megapixel photo needs gigabytes) and warped from the original
DETECT_MAX_SIDE = 1280


class NoFaceError(UserError):
    """The detector found no face in an image."""


class ImageTooSmallError(UserError):
    """An image too small for the face detector."""


@dataclass
class AlignedFace:
    """An aligned crop, its landmarks in crop pixels, and where it came from."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    landmarks: np.ndarray  # (5, 2) float, detected landmarks mapped into the crop
    template: str
    matrix: np.ndarray  # (2, 3) similarity: source pixels -> crop pixels
    box: np.ndarray  # (4,) detector box x1, y1, x2, y2 in the source image
    score: float


def get_template(name: str) -> Template:
    """The template called ``name``; unknown names are a :class:`UserError`."""
    if name not in TEMPLATES:
        raise UserError(f"unknown alignment template {name!r}; choose one of: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) mapping ``src`` onto ``dst``.

    Closed form with complex numbers: ``z -> a (z - mean_src) + mean_dst``,
    ``a = sum(conj(s) d) / sum(|s|^2)`` over centred points. Written here instead of
    ``cv2.estimateAffinePartial2D`` because that one is a robust (RANSAC/LMedS) fit that may drop
    landmarks; with five reliable points the plain least-squares fit is what we want.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    cs, cd = zs - ms, zd - md
    denom = float(np.sum(np.abs(cs) ** 2))
    if denom == 0.0:
        raise ValueError("similarity_transform needs at least two distinct source points")
    a = np.sum(np.conj(cs) * cd) / denom
    t = md - a * ms
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a (2, 3) affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


@functools.lru_cache(maxsize=1)
def default_detector() -> Any:
    """A CPU MTCNN returning all faces (built once; its weights come with the facenet-pytorch wheel)."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError as err:
        raise UserError(
            "face alignment needs facenet-pytorch; install it with `pip install facenet-pytorch==2.5.3 --no-deps`"
        ) from err
    return MTCNN(keep_all=True, device="cpu")


def detect_faces(image_rgb: np.ndarray, detector: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All faces as float arrays ``boxes (N, 4)``, ``scores (N,)``, ``landmarks (N, 5, 2)`` (N may be 0).

    Coordinates are pixels of ``image_rgb``; an image whose longest side exceeds
    :data:`DETECT_MAX_SIDE` is detected on a downscaled copy (``cv2.INTER_AREA``) and the results
    scaled back. Raises :class:`ImageTooSmallError` for an image under :data:`MIN_IMAGE_SIDE` px.
    """
    height, width = image_rgb.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"image is {width}x{height} px, too small for the face detector (at least "
            f"{MIN_IMAGE_SIDE} px a side); use a larger photo"
        )
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        image_rgb = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    detector = detector or default_detector()
    boxes, scores, landmarks = detector.detect(image_rgb, landmarks=True)
    if boxes is None or len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
    # with NumPy 2, facenet-pytorch 2.5.3 returns object arrays
    return (
        np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale,
        np.asarray(scores, dtype=np.float64).reshape(-1),
        np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2) / scale,
    )


def warp_to_template(image_rgb: np.ndarray, landmarks: np.ndarray, template: str) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image_rgb`` so that ``landmarks`` best match ``template``; return (crop, 2x3 matrix)."""
    tpl = get_template(template)
    matrix = similarity_transform(landmarks, tpl.points)
    crop = cv2.warpAffine(
        image_rgb,
        matrix,
        (tpl.size, tpl.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return crop, matrix


def align_face(
    image_rgb: np.ndarray | str | os.PathLike[str], template: str = "dlib150", detector: Any = None
) -> AlignedFace:
    """Detect the largest face in an image (array or path) and align it onto ``template``."""
    source = None
    if isinstance(image_rgb, (str, os.PathLike)):
        source = Path(image_rgb)
        image = read_rgb(source)
    else:
        image = to_rgb(image_rgb)
    get_template(template)
    boxes, scores, landmarks = detect_faces(image, detector)
    if len(boxes) == 0:
        where = f"image {source}" if source is not None else "the image"
        raise NoFaceError(f"no face found in {where}; use a photo with a visible, roughly frontal face")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    best = int(np.argmax(areas))
    crop, matrix = warp_to_template(image, landmarks[best], template)
    return AlignedFace(
        image=crop,
        landmarks=apply_transform(matrix, landmarks[best]),
        template=template,
        matrix=matrix,
        box=boxes[best],
        score=float(scores[best]),
    )


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), by suffix."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def align_folder(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    template: str = "dlib150",
    detector: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Align every image under ``src`` into ``dst`` (same sub-folders, PNG); write and return a report."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UserError(f"source folder {src} does not exist")
    get_template(template)
    images = list_images(src)
    if not images:
        raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {src}")
    report: dict[str, Any] = {
        "template": template,
        "source": str(src),
        "aligned": 0,
        "no_face": [],
        "too_small": [],
        "unreadable": [],
    }
    for path in tqdm(images, desc=f"aligning ({template})", unit="img", disable=not progress):
        rel = path.relative_to(src)
        try:
            image = read_rgb(path)
        except UserError as err:
            report["unreadable"].append({"file": rel.as_posix(), "reason": str(err)})
            continue
        try:
            face = align_face(image, template, detector)
        except ImageTooSmallError as err:
            report["too_small"].append({"file": rel.as_posix(), "reason": str(err)})
            continue
        except NoFaceError:
            report["no_face"].append(rel.as_posix())
            continue
        save_image(face.image, dst / rel.with_suffix(".png"))
        report["aligned"] += 1
    save_json(report, dst / "align_report.json")
    return report


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """``python -m scout_exp.data.align SRC DST [--template NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m scout_exp.data.align",
        description="Detect (MTCNN) and align every face image of a folder tree onto a backbone template.",
    )
    parser.add_argument("src", help="folder of images (sub-folders are kept)")
    parser.add_argument("dst", help="output folder for the aligned PNG crops and align_report.json")
    parser.add_argument("--template", default="dlib150", choices=sorted(TEMPLATES))
    args = parser.parse_args(argv)
    report = align_folder(args.src, args.dst, args.template)
    print(
        f"aligned {report['aligned']} images into {args.dst}; no face: {len(report['no_face'])}, "
        f"too small: {len(report['too_small'])}, unreadable: {len(report['unreadable'])} (see {Path(args.dst) / 'align_report.json'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
