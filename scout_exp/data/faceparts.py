"""FaceParts: a synthetic face benchmark with ground-truth parts, landmarks and counterfactuals.

Each identity is a code of part variants (``scout_exp.data.faceparts_draw``); every image of it
adds nuisance (pose, lighting, colour noise, background clutter, blur, occluders) scaled by
``difficulty``. Rendering is deterministic in (seed, index): all nuisance randomness is one fixed
block of uniforms from a counter-based Philox generator keyed by (index, seed), with a fixed slot
per concern (pose, background, clutter, gaze, blur, lighting, noise, occluders) that is drawn
whatever the parts (one keyed generator costs a quarter of several SeedSequence-seeded ones and
is as independent). Part variants never consume randomness, so ``render(index, swap=...)``
re-renders the very same nuisance with other part variants: a true counterfactual intervention
that changes only the swapped parts' pixels (plus anti-aliasing and blur margins).
This follows the FunnyBirds idea of part-based ground truth (docs/method.md section 6).

Part map: 0 = background (including background clutter), ``i`` = ``PART_NAMES[i - 1]``; the last
label, ``occluder``, marks random occluders drawn over the face. A pixel's label is the part drawn
last there, i.e. the visible one. Parts are drawn hard-edged with the same rasterisation as their
labels and the image is then anti-aliased with a 0.6 px Gaussian (see ``_render``), so a swap
changes pixels only within ``blur_radius`` of the swapped parts' old and new labels.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from scout_exp.data.faceparts_draw import (
    ACCESSORIES,
    CLOSED,
    FACE_PARTS,
    FILL,
    LANDMARK_NAMES,
    NUM_VARIANTS,
    OCCLUDER_LABEL,
    PART_NAMES,
    SKIN_TONES,
    canonical_landmarks,
    ellipse,
    part_ops,
)
from scout_exp.data.part_annotated import PartSample
from scout_exp.errors import UserError

__all__ = [
    "FACE_PARTS",
    "LANDMARK_NAMES",
    "PART_NAMES",
    "OCCLUDER_LABEL",
    "FaceSample",
    "FaceParts",
    "FacePartsDataset",
    "blur_radius",
    "DEFAULT_LOOKALIKES",
    "identity_codes",
    "measure_render_throughput",
]

MIN_PART_DISTANCE = 3  # identities of different families differ in at least this many parts
#: Look-alikes per family: one differing from the family's root in 1, one in 2, one in 3 parts.
DEFAULT_LOOKALIKES: tuple[int, ...] = (1, 2, 3)
#: Parts whose variants differ in hundreds of pixels at 112x112 (face 2,000, hair 1,500, glasses 440;
#: ears 190, often under the hair; an eye, brow, nose or mouth 45-90): each look-alike changes one.
SALIENT_PARTS: tuple[str, ...] = ("face", "hair", "glasses")
MAX_IDENTITIES = 5000
CLEAN_BACKGROUND = (196, 200, 206)
FACE_CENTRE = (0.5, 0.55)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing
_ONE = float(1 << _SHIFT)
# Nuisance uniforms per sample, a fixed slot each: 0-3 pose, 4-6 background colour, 7 clutter
# count, 8-9 gaze, 11-14 blur, 15-24 lighting and noise, 25-26 occluder count, 27-46 two
# occluders (10 each), 47-154 twelve clutter shapes (9 each).
_N_UNIFORM = 160
_OCCLUDER_SLOT, _CLUTTER_SLOT = 27, 47
_MAX_CLUTTER = 12
_MAX_OCCLUDERS = 2
_AA_SIGMA = 0.6  # Gaussian anti-aliasing of the hard-edged drawing, pixels


@dataclass(frozen=True)
class FaceSample:
    """One rendered face: uint8 RGB (H, W, 3), identity, uint8 part map (H, W) and (5, 2) float32
    landmarks (x, y pixels, pixel centres at integers, LANDMARK_NAMES order)."""

    image: np.ndarray
    identity: int
    parts: np.ndarray
    landmarks: np.ndarray


def identity_codes(num_identities: int, seed: int, lookalikes: Sequence[int] = ()) -> np.ndarray:
    """Part-variant codes (num_identities, len(FACE_PARTS)), in families of look-alikes.

    Without ``lookalikes`` every identity is its own family. With ``lookalikes = (k_1, ..., k_m)``
    identities come in families of ``1 + m``: a root ``r`` (family ``f`` = identities
    ``f*(1+m) .. f*(1+m)+m``, root first) and, for each ``k_j``, a look-alike that differs from
    ``r`` in exactly ``k_j`` parts and agrees in all others, one of them salient (``SALIENT_PARTS``,
    while there are enough for the look-alikes). The parts changed for different look-alikes of
    one family are disjoint, so two look-alikes differ in ``k_i + k_j`` parts.
    Members of different families differ in at least ``MIN_PART_DISTANCE`` parts.

    Greedy: candidate roots are drawn from a seed-only stream in fixed batches; a family is kept
    when all its members are at least MIN_PART_DISTANCE parts away from every code kept so far,
    so the codes of N identities are a prefix of those of N + 1 (the last family may be cut
    short). Skin tone is shared by the face and ears variants and a look-alike keeps the root's
    tone. Errors: UserError for an impossible count or a look-alike list that needs more parts
    than a face has.
    """
    if not 1 <= num_identities <= MAX_IDENTITIES:
        raise UserError(f"num_identities must be in [1, {MAX_IDENTITIES}], got {num_identities}")
    ks = [int(k) for k in lookalikes]
    if any(k < 1 for k in ks) or sum(ks) > len(FACE_PARTS):
        raise UserError(
            f"data.lookalikes={ks}: each look-alike differs in k >= 1 parts and together they may change at "
            f"most {len(FACE_PARTS)} parts (the parts of a face); e.g. data.lookalikes=[1,2,3]"
        )
    rng = np.random.default_rng([seed, 0x46505254, 0])
    codes = np.empty((num_identities, len(FACE_PARTS)), dtype=np.int64)
    kept, attempts, max_attempts = 0, 0, 2000 + 100 * num_identities
    batch = 256
    n_tones = len(SKIN_TONES)
    while kept < num_identities:
        tone = rng.integers(n_tones, size=batch)
        cand = {
            "face": rng.integers(NUM_VARIANTS["face"] // n_tones, size=batch) * n_tones + tone,
            "ears": rng.integers(NUM_VARIANTS["ears"] // n_tones, size=batch) * n_tones + tone,
        }
        for part in FACE_PARTS:
            if part in ACCESSORIES:
                present = rng.random(batch) < 0.35
                cand[part] = np.where(present, rng.integers(1, NUM_VARIANTS[part], size=batch), 0)
            elif part not in cand:
                cand[part] = rng.integers(NUM_VARIANTS[part], size=batch)
        block = np.stack([cand[p] for p in FACE_PARTS], axis=1)
        for row in block:
            attempts += 1
            family = _family(row, ks, rng)[: num_identities - kept]
            if kept == 0 or all((codes[:kept] != m).sum(axis=1).min() >= MIN_PART_DISTANCE for m in family):
                codes[kept : kept + len(family)] = family
                kept += len(family)
                if kept == num_identities:
                    break
        if attempts > max_attempts and kept < num_identities:
            raise UserError(
                f"cannot find {num_identities} identities that differ pairwise in >= "
                f"{MIN_PART_DISTANCE} parts (found {kept}); use fewer identities"
            )
    return codes


def _family(root: np.ndarray, ks: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """(1 + len(ks), P) codes: ``root`` and one look-alike per k, changing disjoint random parts.

    Each look-alike's changed parts include one of ``SALIENT_PARTS`` (while they last), the rest
    drawn from the other parts: a look-alike that differed only in a brow or the nose (25-50
    pixels of a 112x112 image) or the ears was not learnable from noisy, occluded samples in a few
    epochs.
    A changed part gets another variant drawn uniformly; face and ears keep the root's skin tone.
    The draws are made whether or not the family is kept, so the stream stays seed-only.
    """
    n_tones = len(SKIN_TONES)
    order = rng.permutation(len(FACE_PARTS))
    picks = rng.random(len(FACE_PARTS))
    salient = [int(j) for j in order if FACE_PARTS[j] in SALIENT_PARTS][: len(ks)]
    others = [int(j) for j in order if int(j) not in salient]
    members = [root]
    for i, k in enumerate(ks):
        first = salient[i : i + 1]
        changed = first + others[: k - len(first)]
        others = others[k - len(first) :]
        row = root.copy()
        for j in changed:
            part, v = FACE_PARTS[j], int(root[j])
            if part in ("face", "ears"):
                shapes = NUM_VARIANTS[part] // n_tones
                shape = (v // n_tones + 1 + int(picks[j] * (shapes - 1))) % shapes
                row[j] = shape * n_tones + v % n_tones
            else:
                row[j] = (v + 1 + int(picks[j] * (NUM_VARIANTS[part] - 1))) % NUM_VARIANTS[part]
        members.append(row)
    return np.stack(members)


class _Geometry:
    """All drawing primitives of one part-variant combination at one image size, ready for cv2.

    Points are concatenated so that one matrix product poses them all; consecutive strokes of
    the same style are merged into one ``cv2.polylines`` call.
    """

    def __init__(self, variants: tuple[int, ...], size: int) -> None:
        ops = [op for part, v in zip(FACE_PARTS, variants) for op in part_ops(part, v)]
        ops.sort(key=lambda op: op.layer)  # stable: keeps each part's own order
        self.pts = np.concatenate([op.pts for op in ops]).astype(np.float64)
        self.gaze = np.concatenate([np.full(len(op.pts), op.gaze) for op in ops])
        bounds = np.cumsum([0] + [len(op.pts) for op in ops]).tolist()
        self.ops: list[tuple[int, tuple[int, int, int], int, int, list[tuple[int, int]]]] = []
        for op, lo, hi in zip(ops, bounds[:-1], bounds[1:]):
            thick = 0 if op.kind == FILL else max(1, round(op.thickness * size))
            key = (op.kind, op.colour, op.label, thick)
            if op.kind != FILL and self.ops and self.ops[-1][:4] == key:
                self.ops[-1][4].append((lo, hi))
            else:
                self.ops.append((*key, [(lo, hi)]))
        self.landmarks = canonical_landmarks(variants[FACE_PARTS.index("nose")], variants[FACE_PARTS.index("mouth")])


@functools.lru_cache(maxsize=8192)
def _geometry(variants: tuple[int, ...], size: int) -> _Geometry:
    return _Geometry(variants, size)


@functools.lru_cache(maxsize=8)
def _photometric_tables(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal and vertical ramps in [-0.5, 0.5] (S x S x 3) and a fixed bank of normals.

    The bank (2S x 2S x 3 standard normals) is sliced at a random offset per image: generating
    S*S*3 normals per image costs more than all the drawing, and a random slice of a fixed bank
    is as good as fresh noise for a nuisance.
    """
    r = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp_x = np.ascontiguousarray(np.broadcast_to(r[None, :, None], (size, size, 3)))
    ramp_y = np.ascontiguousarray(np.broadcast_to(r[:, None, None], (size, size, 3)))
    bank = np.random.default_rng([0x4E4F495345, size]).standard_normal((2 * size, 2 * size, 3), dtype=np.float32)
    return ramp_x, ramp_y, bank


def _rotated_box(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) * 0.5
    return corners @ np.array([[c, s], [-s, c]]) + [cx, cy]


class FaceParts:
    """The benchmark: ``num_identities * images_per_identity`` images, identity of i = i % N.

    A :class:`scout_exp.data.part_annotated.PartAnnotated` data set: its parts are ``FACE_PARTS``
    (the occluder label is outside every part), with counterfactual renders.
    """

    part_names: tuple[str, ...] = FACE_PARTS
    has_counterfactuals = True

    def __init__(
        self,
        num_identities: int = 20,
        images_per_identity: int = 200,
        image_size: int = 112,
        difficulty: float = 1.0,
        seed: int = 0,
        lookalikes: Sequence[int] = DEFAULT_LOOKALIKES,
    ) -> None:
        if images_per_identity < 1:
            raise UserError(f"images_per_identity must be >= 1, got {images_per_identity}")
        if not 32 <= image_size <= 1024:
            raise UserError(f"image_size must be in [32, 1024], got {image_size}")
        if not (math.isfinite(difficulty) and difficulty >= 0):
            raise UserError(f"difficulty must be a finite number >= 0, got {difficulty}")
        self.num_identities = int(num_identities)
        self.images_per_identity = int(images_per_identity)
        self.image_size = int(image_size)
        self.difficulty = float(difficulty)
        self.seed = int(seed)
        self.lookalike_ks = tuple(int(k) for k in lookalikes)
        self.codes = identity_codes(self.num_identities, self.seed, self.lookalike_ks)
        self.codes.setflags(write=False)

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def identity_of(self, index: int) -> int:
        """Identity of sample ``index`` (``index % num_identities``: every prefix is balanced)."""
        return int(index) % self.num_identities

    def _check_identity(self, identity: int) -> int:
        if not 0 <= identity < self.num_identities:
            raise UserError(f"identity {identity} out of range [0, {self.num_identities})")
        return int(identity)

    def variants(self, identity: int) -> dict[str, int]:
        """Part -> variant id of ``identity`` (0 = absent for the accessories glasses/beard)."""
        row = self.codes[self._check_identity(identity)]
        return {p: int(v) for p, v in zip(FACE_PARTS, row)}

    def family_size(self) -> int:
        """Identities per family: the root and one look-alike per ``lookalike_ks`` entry."""
        return 1 + len(self.lookalike_ks)

    def lookalikes(self, identity: int) -> list[int]:
        """Identities that differ from ``identity`` in exactly k parts, k in ``lookalike_ks``.

        For a family's root: its look-alikes (in ``lookalike_ks`` order); for a look-alike: the
        root (the other look-alikes differ in ``k_i + k_j`` parts, not one of the k). Identities
        of a family cut short by ``num_identities`` only have the members that exist.
        """
        identity = self._check_identity(identity)
        size = self.family_size()
        root = identity - identity % size
        if identity != root:
            return [root]
        return [i for i in range(root + 1, min(root + size, self.num_identities))]

    def differing_parts(self, a: int, b: int) -> list[str]:
        """Parts whose variants differ between identities a and b (ground truth for explanations)."""
        ra, rb = self.codes[self._check_identity(a)], self.codes[self._check_identity(b)]
        return [p for p, va, vb in zip(FACE_PARTS, ra, rb) if va != vb]

    def parts_differ(self, a: int, b: int) -> np.ndarray:
        """(len(FACE_PARTS),) bool: which parts' variants differ between identities a and b."""
        return self.codes[self._check_identity(a)] != self.codes[self._check_identity(b)]

    def part_sample(self, index: int) -> PartSample:
        """Image ``index`` (uint8 RGB) and its (H, W) int64 part map: indices into FACE_PARTS, -1 on
        background and occluders."""
        sample = self.render(index)
        part_map = sample.parts.astype(np.int64) - 1
        part_map[part_map >= len(FACE_PARTS)] = -1
        return PartSample(sample.image, part_map)

    def counterfactual(self, index: int, part: int, identity: int) -> np.ndarray:
        """uint8 RGB image ``index`` with part ``FACE_PARTS[part]`` switched to ``identity``'s variant
        (``render(index, swap=...)``: same pose, light, clutter and noise)."""
        return self.render(index, swap={FACE_PARTS[part]: identity}).image

    def part_mask(self, sample: FaceSample, parts: Iterable[str]) -> np.ndarray:
        """Boolean (H, W) mask of the pixels where any of ``parts`` is visible."""
        labels = []
        for p in parts:
            if p not in PART_NAMES:
                raise UserError(f"unknown part {p!r}; known parts: {', '.join(PART_NAMES)}")
            labels.append(PART_NAMES.index(p) + 1)
        return np.isin(sample.parts, labels)

    def render(self, index: int, swap: Mapping[str, int] | None = None) -> FaceSample:
        """Render sample ``index``; ``swap`` maps parts to identities whose variants replace them.

        The nuisance (pose, lighting, noise, clutter, occluders, blur) is the same with or without
        ``swap``, so the pair is a counterfactual; the identity returned stays the original's.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range [0, {len(self)})")
        identity = self.identity_of(index)
        row = list(self.codes[identity])
        for part, other in (swap or {}).items():
            if part not in FACE_PARTS:
                raise UserError(f"cannot swap {part!r}; swappable parts: {', '.join(FACE_PARTS)}")
            k = FACE_PARTS.index(part)
            row[k] = self.codes[self._check_identity(other)][k]
        geom = _geometry(tuple(int(v) for v in row), self.image_size)
        rng = np.random.Generator(np.random.Philox(key=[index, self.seed % 2**64]))
        image, parts, landmarks = _render(geom, self.image_size, self.difficulty, rng)
        return FaceSample(image=image, identity=identity, parts=parts, landmarks=landmarks)


def _render(
    geom: _Geometry, size: int, d: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one sample: background, clutter, face parts, occluders, then blur, light and noise."""
    u = rng.random(_N_UNIFORM).tolist()
    dc = min(d, 1.0)
    # Pose: rotation about the face centre, scale, translation (normalised units).
    angle = math.radians((2 * u[0] - 1) * 12.0 * d)
    scale = 1.0 + (2 * u[1] - 1) * 0.08 * d
    tx, ty = (2 * u[2] - 1) * 0.06 * d, (2 * u[3] - 1) * 0.06 * d
    c, s = math.cos(angle) * scale * size, math.sin(angle) * scale * size
    a = np.array([[c, -s], [s, c]])
    cx, cy = FACE_CENTRE
    b = np.array([size * (cx + tx) - (c * cx - s * cy) - 0.5, size * (cy + ty) - (s * cx + c * cy) - 0.5])

    bg = np.array(CLEAN_BACKGROUND) + (np.array(u[4:7]) * 255 - CLEAN_BACKGROUND) * dc
    image = np.empty((size, size, 3), np.uint8)
    image[:] = bg.astype(np.uint8)
    parts = np.zeros((size, size), np.uint8)
    _draw_clutter(image, u, int(u[7] * (1 + 8 * min(d, 1.5))), size)

    pts = geom.pts
    if d > 0:
        pts = pts + np.outer(geom.gaze, [(u[8] - 0.5) * 0.02 * dc, (u[9] - 0.5) * 0.008 * dc])
    occluders = _occluders(u, d)
    if occluders:
        pts = np.concatenate([pts] + occluders)
    fixed = np.rint((pts @ a.T + b) * _ONE).astype(np.int32)
    # Parts are rasterised exactly like their labels (cv2.LINE_8, sub-pixel points) and the whole
    # image is then anti-aliased by a small Gaussian (``_smooth``). cv2.LINE_AA is not used for
    # parts: its fringes let a hidden part show through sub-pixel slivers far from any pixel
    # labelled with it, which would break the counterfactual guarantee; with shared
    # rasterisation a swap changes exactly the swapped parts' labelled pixels before smoothing.
    for kind, colour, label, thick, spans in geom.ops:
        poly = [fixed[lo:hi] for lo, hi in spans]
        if kind == FILL:
            cv2.fillPoly(image, poly, colour, cv2.LINE_8, _SHIFT)
            cv2.fillPoly(parts, poly, label, cv2.LINE_8, _SHIFT)
        else:
            closed = kind == CLOSED
            cv2.polylines(image, poly, closed, colour, thick, cv2.LINE_8, _SHIFT)
            cv2.polylines(parts, poly, closed, label, thick, cv2.LINE_8, _SHIFT)
    start = len(geom.pts)
    for k, occ in enumerate(occluders):
        poly = [fixed[start : start + len(occ)]]
        start += len(occ)
        base = _OCCLUDER_SLOT + 10 * k
        if u[base + 9] < 0.3:
            colour = SKIN_TONES[int(u[base + 6] * len(SKIN_TONES)) % len(SKIN_TONES)]
        else:
            colour = (int(u[base + 6] * 255), int(u[base + 7] * 255), int(u[base + 8] * 255))
        cv2.fillPoly(image, poly, colour, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(parts, poly, OCCLUDER_LABEL, cv2.LINE_8, _SHIFT)

    landmarks = (geom.landmarks @ a.T + b).astype(np.float32)
    image = _smooth(image, u, d, size)
    if d > 0:
        image = _photometric(image, u, d, size)
    return image, parts, landmarks


def _draw_clutter(image: np.ndarray, u: list[float], count: int, size: int) -> None:
    """Random background shapes (label 0: they lie behind the face)."""
    for k in range(min(count, _MAX_CLUTTER)):
        v = u[_CLUTTER_SLOT + 9 * k : _CLUTTER_SLOT + 9 * (k + 1)]
        colour = (int(v[4] * 255), int(v[5] * 255), int(v[6] * 255))
        x, y = int(v[1] * size), int(v[2] * size)
        r = max(2, int((0.04 + 0.22 * v[3]) * size))
        kind = int(v[0] * 4)
        if kind == 0:
            cv2.circle(image, (x, y), r, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(image, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1, cv2.LINE_AA)
        elif kind == 2:
            dx, dy = int(r * math.cos(6.3 * v[7])), int(r * math.sin(6.3 * v[7]))
            cv2.line(image, (x - dx, y - dy), (x + dx, y + dy), colour, max(1, r // 6), cv2.LINE_AA)
        else:
            cv2.ellipse(image, (x, y), (r, max(1, int(r * v[8]))), 360 * v[7], 0, 360, colour, -1, cv2.LINE_AA)


def _occluders(u: list[float], d: float) -> list[np.ndarray]:
    """Polygons (normalised, unposed face coordinates) of random occluders over the face."""
    if d <= 0:
        return []
    first = u[25] < min(0.95, 0.3 * d)
    count = int(first) + int(first and u[26] < min(0.8, 0.2 * d))
    grow = math.sqrt(min(d, 1.0)) * (1 + 0.25 * max(d - 1.0, 0.0))
    out = []
    for k in range(min(count, _MAX_OCCLUDERS)):
        v = u[_OCCLUDER_SLOT + 10 * k : _OCCLUDER_SLOT + 10 * (k + 1)]
        cx, cy = 0.3 + 0.4 * v[1], 0.36 + 0.44 * v[2]
        w, h = (0.08 + 0.26 * v[3]) * grow, (0.06 + 0.2 * v[4]) * grow
        angle = (v[5] - 0.5) * math.pi
        kind = int(v[0] * 3)
        if kind == 0:
            out.append(_rotated_box(cx, cy, w, h, angle))
        elif kind == 1:
            pts = ellipse(0.0, 0.0, w * 0.5, h * 0.5, 20)
            cs, sn = math.cos(angle), math.sin(angle)
            out.append(pts @ np.array([[cs, sn], [-sn, cs]]) + [cx, cy])
        else:
            out.append(_rotated_box(cx, cy, w * 1.8, 0.035 * grow + 0.02, angle))
    return out


def blur_radius(image_size: int, difficulty: float) -> int:
    """Largest distance (pixels) over which smoothing and blur can spread a pixel change."""
    return _kernel(_max_sigma(image_size, difficulty))[0] // 2


def _max_sigma(size: int, d: float) -> float:
    return math.hypot(_AA_SIGMA, max(0.9 * d, 2.2 * min(d, 1.6)) * size / 112.0)


def _kernel(sigma: float) -> tuple[int, int]:
    k = max(3, 2 * math.ceil(2.5 * sigma) + 1)
    return k, k


def _smooth(image: np.ndarray, u: list[float], d: float, size: int) -> np.ndarray:
    """Anti-aliasing (sigma 0.6 px) combined with the nuisance blur, in one Gaussian pass.

    The nuisance blur is mild (sigma up to 0.9 px at 112) for half of the images and strong
    (1.4 to 2.2 px, times the difficulty up to 1.6) for 8% * difficulty of them.
    """
    px = size / 112.0
    sigma = 0.0
    if u[11] < 0.5:
        sigma = u[12] * 0.9 * d * px
    if u[13] < min(0.5, 0.08 * d):
        sigma = (1.4 + 0.8 * u[14]) * min(d, 1.6) * px
    total = math.hypot(_AA_SIGMA, sigma)
    return cv2.GaussianBlur(image, _kernel(total), total)


def _photometric(image: np.ndarray, u: list[float], d: float, size: int) -> np.ndarray:
    """Per-pixel lighting (contrast, brightness, colour cast, a brightness gradient) and Gaussian
    colour noise, saturated to uint8 by ``cv2.add``.

    Every step is a fixed per-pixel function, so pixels away from changed parts stay
    bit-identical between a sample and its counterfactual.
    """
    contrast = max(0.35, 1.0 + (u[15] - 0.5) * 0.5 * d)
    bright = (u[16] - 0.5) * 60.0 * d
    cast = [1.0 + (w - 0.5) * 0.16 * d for w in u[19:22]]
    gain = np.zeros((3, 4), np.float32)
    for ch in range(3):
        gain[ch, ch] = contrast * cast[ch]
        gain[ch, 3] = (128.0 * (1.0 - contrast) + bright) * cast[ch]
    ramp_x, ramp_y, bank = _photometric_tables(size)
    ox, oy = int(u[23] * size), int(u[24] * size)
    light = cv2.addWeighted(ramp_x, (u[17] - 0.5) * 80.0 * d, ramp_y, (u[18] - 0.5) * 80.0 * d, 0.0)
    light = cv2.scaleAdd(bank[oy : oy + size, ox : ox + size], u[22] * 8.0 * d, light)
    return cv2.add(cv2.transform(image.astype(np.float32), gain), light, dtype=cv2.CV_8U)


class FacePartsDataset(torch.utils.data.Dataset):
    """A subset of FaceParts as (image tensor, identity); ``sample(i)`` gives parts and landmarks.

    With ``annotated=True`` items are ``(image, identity, landmarks, parts)``: the (5, 2) float32
    landmarks and the (S, S) int64 part map brought to the transformed image's size S, landmarks in
    continuous pixel coordinates (pixel centres at ``+0.5``, the convention of
    ``scout_exp.interp.occlusion``), for occlusion synthesis during interpretable training.
    """

    def __init__(
        self,
        faceparts: FaceParts,
        indices: Sequence[int],
        transform: Callable[[np.ndarray], torch.Tensor] | None = None,
        annotated: bool = False,
    ) -> None:
        self.faceparts = faceparts
        self.indices = np.asarray(list(indices), dtype=np.int64)
        self.transform = transform
        self.annotated = annotated

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, i: int) -> FaceSample:
        """The full rendered sample (image, identity, part map, landmarks) of dataset item ``i``."""
        return self.faceparts.render(int(self.indices[i]))

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        s = self.sample(i)
        if self.transform is not None:
            x = self.transform(s.image)
        else:
            x = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0)
        if not self.annotated:
            return x, s.identity
        size = x.shape[-1]
        parts = s.parts
        if parts.shape[0] != size:
            parts = cv2.resize(parts, (size, size), interpolation=cv2.INTER_NEAREST)
        landmarks = (s.landmarks + 0.5) * (size / s.image.shape[1])
        return x, s.identity, torch.from_numpy(landmarks.astype(np.float32)), torch.from_numpy(parts.astype(np.int64))


def measure_render_throughput(n: int = 2000, image_size: int = 112) -> float:
    """Images per second rendered in this process (image + part map + landmarks, difficulty 1)."""
    fp = FaceParts(
        num_identities=20, images_per_identity=max(1, math.ceil(n / 20)), image_size=image_size, difficulty=1.0, seed=0
    )
    for i in range(min(n, 40)):  # warm the geometry caches, the noise bank and cv2
        fp.render(i)
    start = time.perf_counter()
    for i in range(n):
        fp.render(i)
    return n / (time.perf_counter() - start)
