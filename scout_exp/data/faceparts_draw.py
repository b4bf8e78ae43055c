"""FaceParts geometry: every part variant as a list of polygons in normalised face coordinates.

Coordinates are in [0, 1]^2 of the canonical (unposed) image, x to the right, y down; "left"
means image-left. A part's geometry depends only on its own variant id, never on another part, so
that swapping one part changes only the pixels that part covers (the counterfactual guarantee).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

FACE_PARTS: tuple[str, ...] = (
    "face",
    "ears",
    "hair",
    "left_eye",
    "right_eye",
    "left_brow",
    "right_brow",
    "nose",
    "mouth",
    "glasses",
    "beard",
)
PART_NAMES: tuple[str, ...] = FACE_PARTS + ("occluder",)
LANDMARK_NAMES: tuple[str, ...] = (
    "left_eye_centre",
    "right_eye_centre",
    "nose_tip",
    "left_mouth_corner",
    "right_mouth_corner",
)
OCCLUDER_LABEL = len(PART_NAMES)

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (250, 222, 196),
    (232, 188, 152),
    (200, 146, 104),
    (158, 108, 72),
    (120, 82, 58),
)
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (28, 24, 24),
    (88, 56, 34),
    (156, 72, 34),
    (222, 188, 112),
    (170, 170, 176),
)
IRIS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (96, 58, 28),
    (56, 118, 206),
    (64, 146, 78),
    (128, 128, 140),
)
BROW_COLOURS: tuple[tuple[int, int, int], ...] = ((34, 28, 28), (124, 88, 52))
LIP_COLOURS: tuple[tuple[int, int, int], ...] = ((204, 70, 82), (150, 66, 62))
BEARD_COLOURS: tuple[tuple[int, int, int], ...] = ((40, 32, 28), (132, 92, 52))
GLASSES_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 20, 20),
    (20, 20, 20),
    (206, 164, 58),
    (36, 70, 170),
)
NOSE_COLOUR = (70, 38, 32)
SCLERA = (246, 246, 240)
LINE_DARK = (40, 28, 28)

FACE_SHAPES = 5  # oval, round, long, square, heart; face variant = shape * 5 + tone
EAR_SHAPES = 3  # small, medium, large; ears variant = shape * 5 + tone (tone follows the face)
HAIR_STYLES = 6
NUM_VARIANTS: dict[str, int] = {
    "face": FACE_SHAPES * len(SKIN_TONES),
    "ears": EAR_SHAPES * len(SKIN_TONES),
    "hair": HAIR_STYLES * len(HAIR_COLOURS),
    "left_eye": 3 * len(IRIS_COLOURS),
    "right_eye": 3 * len(IRIS_COLOURS),
    "left_brow": 9 * len(BROW_COLOURS),
    "right_brow": 9 * len(BROW_COLOURS),
    "nose": 9,
    "mouth": 6 * len(LIP_COLOURS),
    "glasses": 1 + len(GLASSES_COLOURS),
    "beard": 1 + 3 * len(BEARD_COLOURS),
}
ACCESSORIES: tuple[str, ...] = ("glasses", "beard")

EYE_CENTRES = ((0.395, 0.50), (0.605, 0.50))
FILL, OPEN, CLOSED = 0, 1, 2
# Layers, back to front: hair behind the head, ears, face, beard, nose, mouth, eyes, brows,
# hair in front (fringe and side locks), glasses.
LAYER = {
    "hair_back": 0,
    "ears": 1,
    "face": 2,
    "beard": 3,
    "nose": 4,
    "mouth": 5,
    "left_eye": 6,
    "right_eye": 6,
    "left_brow": 7,
    "right_brow": 7,
    "hair_front": 8,
    "glasses": 9,
}


class Op(NamedTuple):
    """One drawing primitive: a filled polygon or a polyline in normalised coordinates."""

    layer: int
    kind: int
    pts: np.ndarray
    colour: tuple[int, int, int]
    label: int
    thickness: float
    gaze: bool = False


def label_of(part: str) -> int:
    """Label value of ``part`` in the part map (1-based index into PART_NAMES)."""
    return PART_NAMES.index(part) + 1


def ellipse(
    cx: float, cy: float, ax: float, ay: float, n: int = 24, t0: float = 0.0, t1: float = 2 * np.pi
) -> np.ndarray:
    """Points on an axis-aligned ellipse (or an arc of it from angle t0 to t1)."""
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * np.pi - 1e-9)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def _shade(colour: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, round(c * f))) for c in colour)  # type: ignore[return-value]


def _mirror(pts: np.ndarray) -> np.ndarray:
    out = pts.copy()
    out[:, 0] = 1.0 - out[:, 0]
    return out


def _face(variant: int) -> list[Op]:
    shape, tone = divmod(variant, len(SKIN_TONES))
    a, b, n, taper = (
        (0.25, 0.31, 2.0, 0.18),
        (0.28, 0.29, 2.0, 0.08),
        (0.225, 0.34, 2.2, 0.15),
        (0.265, 0.305, 3.4, 0.10),
        (0.275, 0.31, 2.4, 0.38),
    )[shape]
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = a * np.sign(c) * np.abs(c) ** (2 / n)
    y = b * np.sign(s) * np.abs(s) ** (2 / n)
    x = np.where(y > 0, x * (1 - taper * (y / b) ** 2), x)
    pts = np.stack([0.5 + x, 0.55 + y], axis=1)
    return [Op(LAYER["face"], FILL, pts, SKIN_TONES[tone], label_of("face"), 0.0)]


def _ears(variant: int) -> list[Op]:
    shape, tone = divmod(variant, len(SKIN_TONES))
    ax, ay = ((0.034, 0.055), (0.042, 0.07), (0.052, 0.085))[shape]
    lab, fill, line = label_of("ears"), _shade(SKIN_TONES[tone], 0.93), _shade(SKIN_TONES[tone], 0.7)
    ops = []
    for side in (-1, 1):
        cx = 0.5 + side * 0.26
        ops.append(Op(LAYER["ears"], FILL, ellipse(cx, 0.53, ax, ay), fill, lab, 0.0))
        t0 = -np.pi / 2 if side > 0 else np.pi / 2
        inner = ellipse(cx + side * ax * 0.2, 0.53, ax * 0.5, ay * 0.6, 12, t0, t0 + np.pi)
        ops.append(Op(LAYER["ears"], OPEN, inner, line, lab, 0.008))
    return ops


def _hair(variant: int) -> list[Op]:
    style, colour_id = divmod(variant, len(HAIR_COLOURS))
    colour = HAIR_COLOURS[colour_id]
    dark = _shade(colour, 0.72)
    lab = label_of("hair")
    back, front = LAYER["hair_back"], LAYER["hair_front"]
    cap = np.concatenate([ellipse(0.5, 0.42, 0.29, 0.25, 20, np.pi, 2 * np.pi), [[0.79, 0.44], [0.76, 0.40]]])
    ops: list[Op] = []
    if style == 0:  # short crop with a straight hairline
        line = np.array([[0.76, 0.40], [0.70, 0.31], [0.5, 0.29], [0.30, 0.31], [0.24, 0.40], [0.21, 0.44]])
        ops.append(Op(back, FILL, ellipse(0.5, 0.45, 0.30, 0.29), colour, lab, 0.0))
        ops.append(Op(front, FILL, np.concatenate([cap, line]), colour, lab, 0.0))
    elif style == 1:  # long straight hair with bangs, covering the ears
        body = np.array(
            [[0.16, 0.40], [0.18, 0.22], [0.5, 0.13], [0.82, 0.22], [0.84, 0.40], [0.86, 0.90], [0.14, 0.90]]
        )
        ops.append(Op(back, FILL, body, colour, lab, 0.0))
        bangs = np.concatenate(
            [
                ellipse(0.5, 0.40, 0.30, 0.26, 20, np.pi, 2 * np.pi),
                [[0.80, 0.40], [0.78, 0.35], [0.22, 0.35], [0.20, 0.40]],
            ]
        )
        ops.append(Op(front, FILL, bangs, colour, lab, 0.0))
        for side in (-1, 1):
            lock = np.array(
                [
                    [0.5 + side * 0.22, 0.34],
                    [0.5 + side * 0.30, 0.36],
                    [0.5 + side * 0.33, 0.82],
                    [0.5 + side * 0.25, 0.80],
                    [0.5 + side * 0.225, 0.55],
                ]
            )
            ops.append(Op(front, FILL, lock, colour, lab, 0.0))
        for x in (0.40, 0.5, 0.60):
            ops.append(Op(front, OPEN, np.array([[x, 0.2], [x - 0.01, 0.34]]), dark, lab, 0.008))
    elif style == 2:  # side-swept fringe
        ops.append(Op(back, FILL, ellipse(0.5, 0.46, 0.31, 0.31), colour, lab, 0.0))
        sweep = np.array([[0.77, 0.42], [0.74, 0.30], [0.55, 0.30], [0.36, 0.37], [0.24, 0.40], [0.21, 0.44]])
        ops.append(Op(front, FILL, np.concatenate([cap, sweep]), colour, lab, 0.0))
        ops.append(Op(front, OPEN, np.array([[0.66, 0.2], [0.58, 0.27], [0.42, 0.33]]), dark, lab, 0.009))
    elif style == 3:  # curly volume
        ops.append(Op(back, FILL, ellipse(0.5, 0.43, 0.37, 0.34, 32), colour, lab, 0.0))
        ops.append(Op(front, FILL, np.concatenate([cap, [[0.5, 0.30], [0.21, 0.44]]]), colour, lab, 0.0))
        for k, x in enumerate(np.linspace(0.27, 0.73, 7)):
            y = 0.31 + 0.03 * abs(x - 0.5) / 0.23
            ops.append(Op(front, FILL, ellipse(x, y + 0.01 * (k % 2), 0.04, 0.035, 14), colour, lab, 0.0))
            ops.append(Op(front, OPEN, ellipse(x, y, 0.025, 0.02, 10, 0.3, 2.8), dark, lab, 0.007))
    elif style == 4:  # receding hairline with a bun on top
        ops.append(Op(back, FILL, ellipse(0.5, 0.11, 0.085, 0.07, 20), colour, lab, 0.0))
        ops.append(Op(back, FILL, ellipse(0.5, 0.44, 0.29, 0.27), colour, lab, 0.0))
        line = np.array([[0.76, 0.40], [0.66, 0.26], [0.5, 0.24], [0.34, 0.26], [0.24, 0.40], [0.21, 0.44]])
        ops.append(Op(front, FILL, np.concatenate([cap, line]), colour, lab, 0.0))
    else:  # spiky top
        spikes = [[0.22, 0.40]]
        for k, x in enumerate(np.linspace(0.24, 0.76, 9)):
            spikes.append([x, 0.10 if k % 2 else 0.20])
        spikes += [[0.78, 0.40], [0.70, 0.32], [0.5, 0.30], [0.30, 0.32]]
        ops.append(Op(back, FILL, ellipse(0.5, 0.45, 0.295, 0.28), colour, lab, 0.0))
        ops.append(Op(front, FILL, np.array(spikes), colour, lab, 0.0))
    return ops


def _eye(variant: int, side: int) -> list[Op]:
    shape, iris_id = divmod(variant, len(IRIS_COLOURS))
    cx, cy = EYE_CENTRES[side]
    lab = label_of("left_eye" if side == 0 else "right_eye")
    layer = LAYER["left_eye"]
    if shape == 0:  # almond: two arcs meeting in corners
        hw, hh = 0.052, 0.024
        x = np.linspace(-hw, hw, 13)
        up = np.stack([cx + x, cy - hh * (1 - (x / hw) ** 2)], axis=1)
        lo = np.stack([cx + x[::-1], cy + 0.8 * hh * (1 - (x[::-1] / hw) ** 2)], axis=1)
        outline, lid = np.concatenate([up, lo[1:-1]]), 0.008
    elif shape == 1:  # round and large
        hw, hh = 0.044, 0.033
        outline, lid = ellipse(cx, cy, hw, hh, 24), 0.008
    else:  # narrow, heavy lid
        hw, hh = 0.056, 0.017
        outline, lid = ellipse(cx, cy, hw, hh, 24), 0.016
    r = min(hh * 0.95, 0.021)
    ops = [
        Op(layer, FILL, outline, SCLERA, lab, 0.0),
        Op(layer, FILL, ellipse(cx, cy, r, r, 18), IRIS_COLOURS[iris_id], lab, 0.0, True),
        Op(layer, FILL, ellipse(cx, cy, r * 0.45, r * 0.45, 12), (12, 12, 12), lab, 0.0, True),
        Op(layer, CLOSED, outline, LINE_DARK, lab, lid),
    ]
    return ops


def _brow(variant: int, side: int) -> list[Op]:
    form, colour_id = divmod(variant, len(BROW_COLOURS))
    thick_id, shape = divmod(form, 3)
    thickness = (0.011, 0.019, 0.029)[thick_id]
    x = np.linspace(0.34, 0.45, 5)  # image-left brow, outer end first
    t = (x - 0.34) / 0.11
    if shape == 0:  # flat
        y = 0.435 - 0.004 * np.sin(np.pi * t)
    elif shape == 1:  # arched
        y = 0.44 - 0.022 * np.sin(np.pi * t)
    else:  # angled: high outside, low inside
        y = 0.422 + 0.024 * t
    pts = np.stack([x, y], axis=1)
    if side == 1:
        pts = _mirror(pts)
    lab = label_of("left_brow" if side == 0 else "right_brow")
    return [Op(LAYER["left_brow"], OPEN, pts, BROW_COLOURS[colour_id], lab, thickness)]


def _nose_tip(variant: int) -> float:
    return 0.615 + 0.02 * (variant // 3)


def _nose(variant: int) -> list[Op]:
    size, shape = divmod(variant, 3)
    k = 1.0 + 0.25 * size
    tip = _nose_tip(variant)
    lab, layer = label_of("nose"), LAYER["nose"]
    ops: list[Op] = []
    if shape == 0:  # straight, with a bridge line
        ops.append(Op(layer, OPEN, np.array([[0.488, 0.51], [0.484, tip - 0.025]]), NOSE_COLOUR, lab, 0.011))
        tip_arc = ellipse(0.5, tip - 0.012, 0.026 * k, 0.012, 11, 0.0, np.pi)
        nostril_r = 0.007 * k
    elif shape == 1:  # wide
        tip_arc = ellipse(0.5, tip - 0.016, 0.038 * k, 0.016, 13, 0.0, np.pi)
        nostril_r = 0.011 * k
    else:  # button: a small round tip
        tip_arc = ellipse(0.5, tip - 0.014, 0.014 * k, 0.014, 14, -0.25 * np.pi, 1.25 * np.pi)
        nostril_r = 0.006 * k
    ops.append(Op(layer, OPEN, tip_arc, NOSE_COLOUR, lab, 0.013))
    half = 0.018 * k + (0.008 if shape == 1 else 0.0)
    for side in (-1, 1):
        ops.append(
            Op(
                layer,
                FILL,
                ellipse(0.5 + side * half, tip - 0.006, nostril_r, nostril_r * 0.6, 10),
                NOSE_COLOUR,
                lab,
                0.0,
            )
        )
    return ops


def _mouth_geometry(variant: int) -> tuple[int, float, float, int]:
    form, colour_id = divmod(variant, len(LIP_COLOURS))
    wide, shape = divmod(form, 3)
    hw = (0.062, 0.085)[wide]
    corner_dy = (0.0, -0.016, 0.0)[shape]
    return shape, hw, corner_dy, colour_id


def _mouth(variant: int) -> list[Op]:
    shape, hw, dy, colour_id = _mouth_geometry(variant)
    cy = 0.735
    lab, layer, lip = label_of("mouth"), LAYER["mouth"], LIP_COLOURS[colour_id]
    x = np.linspace(-hw, hw, 13)
    u = x / hw
    bend = dy * u**2  # smile raises the corners
    gap = 0.018 if shape == 2 else 0.0
    mid_up = cy + bend - gap * (1 - u**2)
    mid_lo = cy + bend + gap * (1 - u**2)
    top = mid_up - 0.024 * (1 - u**2) + 0.006 * np.exp(-((u * 5) ** 2))  # cupid's bow dip
    bottom = mid_lo + 0.026 * (1 - u**2)
    upper = np.concatenate([np.stack([0.5 + x, top], 1), np.stack([0.5 + x[::-1], mid_up[::-1]], 1)])
    lower = np.concatenate([np.stack([0.5 + x, mid_lo], 1), np.stack([0.5 + x[::-1], bottom[::-1]], 1)])
    ops = [Op(layer, FILL, upper, lip, lab, 0.0), Op(layer, FILL, lower, lip, lab, 0.0)]
    if shape == 2:  # open: dark inside with a row of teeth
        inside = np.concatenate(
            [np.stack([0.5 + x, mid_up], 1)[1:-1], np.stack([0.5 + x[::-1], mid_lo[::-1]], 1)[1:-1]]
        )
        ops.append(Op(layer, FILL, inside, (60, 16, 24), lab, 0.0))
        teeth = np.concatenate(
            [np.stack([0.5 + x, mid_up], 1)[2:-2], np.stack([0.5 + x[::-1], mid_up[::-1] + 0.01], 1)[2:-2]]
        )
        ops.append(Op(layer, FILL, teeth, (244, 242, 230), lab, 0.0))
    else:
        ops.append(Op(layer, OPEN, np.stack([0.5 + x, mid_up], 1), (96, 30, 36), lab, 0.007))
    return ops


def _glasses(variant: int) -> list[Op]:
    if variant == 0:
        return []
    colour = GLASSES_COLOURS[variant - 1]
    rect, thick = variant in (2, 4), (0.009, 0.017, 0.010, 0.017)[variant - 1]
    lab, layer = label_of("glasses"), LAYER["glasses"]
    ops = []
    for cx, cy in EYE_CENTRES:
        if rect:
            rim = np.array(
                [[cx - 0.072, cy - 0.042], [cx + 0.072, cy - 0.042], [cx + 0.068, cy + 0.042], [cx - 0.068, cy + 0.042]]
            )
        else:
            rim = ellipse(cx, cy, 0.064, 0.058, 28)
        ops.append(Op(layer, CLOSED, rim, colour, lab, thick))
    inner = 0.072 if rect else 0.064
    ops.append(
        Op(
            layer,
            OPEN,
            np.array([[EYE_CENTRES[0][0] + inner, 0.49], [0.5, 0.482], [EYE_CENTRES[1][0] - inner, 0.49]]),
            colour,
            lab,
            thick,
        )
    )
    for side, (cx, _) in zip((-1, 1), EYE_CENTRES):
        ops.append(
            Op(layer, OPEN, np.array([[cx + side * inner, 0.485], [0.5 + side * 0.27, 0.50]]), colour, lab, thick)
        )
    return ops


def _beard(variant: int) -> list[Op]:
    if variant == 0:
        return []
    style, colour_id = divmod(variant - 1, len(BEARD_COLOURS))
    colour, lab, layer = BEARD_COLOURS[colour_id], label_of("beard"), LAYER["beard"]
    if style == 0:  # full beard along the jaw, around the mouth
        jaw = ellipse(0.5, 0.62, 0.245, 0.27, 17, 0.05 * np.pi, 0.95 * np.pi)
        inner = np.array(
            [[0.34, 0.60], [0.38, 0.68], [0.42, 0.70], [0.5, 0.69], [0.58, 0.70], [0.62, 0.68], [0.66, 0.60]]
        )
        pts = np.concatenate([[[0.74, 0.58]], jaw, [[0.26, 0.58]], inner])
        return [Op(layer, FILL, pts, colour, lab, 0.0)]
    if style == 1:  # goatee
        return [
            Op(
                layer,
                FILL,
                np.concatenate([ellipse(0.5, 0.79, 0.05, 0.07, 15, 0.0, np.pi), [[0.44, 0.785], [0.56, 0.785]]]),
                colour,
                lab,
                0.0,
            ),
            Op(
                layer,
                FILL,
                np.array([[0.43, 0.69], [0.5, 0.675], [0.57, 0.69], [0.58, 0.71], [0.5, 0.70], [0.42, 0.71]]),
                colour,
                lab,
                0.0,
            ),
        ]
    return [
        Op(
            layer,
            FILL,
            np.array(
                [
                    [0.40, 0.715],
                    [0.44, 0.685],
                    [0.5, 0.68],
                    [0.56, 0.685],
                    [0.60, 0.715],
                    [0.56, 0.705],
                    [0.5, 0.70],
                    [0.44, 0.705],
                ]
            ),
            colour,
            lab,
            0.0,
        )
    ]


@functools.cache
def part_ops(part: str, variant: int) -> tuple[Op, ...]:
    """Drawing primitives of one part variant (cached; geometry is fixed per variant)."""
    if not 0 <= variant < NUM_VARIANTS[part]:
        raise ValueError(f"{part} has {NUM_VARIANTS[part]} variants, got {variant}")
    builders = {
        "face": _face,
        "ears": _ears,
        "hair": _hair,
        "nose": _nose,
        "mouth": _mouth,
        "glasses": _glasses,
        "beard": _beard,
        "left_eye": lambda v: _eye(v, 0),
        "right_eye": lambda v: _eye(v, 1),
        "left_brow": lambda v: _brow(v, 0),
        "right_brow": lambda v: _brow(v, 1),
    }
    return tuple(builders[part](variant))


def canonical_landmarks(nose: int, mouth: int) -> np.ndarray:
    """The 5 landmarks (LANDMARK_NAMES order) in normalised coordinates for these variants."""
    _, hw, dy, _ = _mouth_geometry(mouth)
    return np.array(
        [EYE_CENTRES[0], EYE_CENTRES[1], [0.5, _nose_tip(nose)], [0.5 - hw, 0.735 + dy], [0.5 + hw, 0.735 + dy]],
        dtype=np.float64,
    )
