"""Verification explanations: which regions make a (probe, reference) pair similar, and which different.

For an embedder ``f`` (image -> descriptor) the score of the probe ``x_p`` is its cosine similarity
to the *fixed* reference embedding, ``q(x_p) = <f(x_p), e_r> / ||f(x_p)||`` with
``e_r = f(x_r) / ||f(x_r)||`` (no gradient through ``e_r``); the reference is explained against
the fixed probe embedding in the same batch. Any attribution method explains ``q`` and ``-q``:

- ``similar`` evidence = ``ReLU(map of q)``: the regions that make the pair alike;
- ``different`` evidence = ``ReLU(map of -q)``: the regions that tell the two apart.

For gradient x activation (SCOUT Eq. 10, kept signed here) the map of ``-q`` is minus the map of
``q``, so these are the positive and negative parts of one signed map (the similarity and
dissimilarity maps of xSSAB-style explanations); for the CAM family they are the CAMs of the two
scores; for ``rise`` (:mod:`scout_exp.attribution.rise`, black box) the positive and negative parts
of the mean-centred RISE map of ``q``. Built-in methods run as two targets of one batched backward
(:mod:`scout_exp.attribution.base`); ``pgc:`` and ``captum:`` adapters run the third-party code.

A side whose evidence mass is below :data:`DEGENERATE_MASS` is *degenerate*: there is nothing to
share out (e.g. a photo verified against itself sits at the maximum of the cosine, where every
gradient is zero), so its shares are ``null`` and its figure says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from scout_exp.attribution import create_attribution  # noqa: E402
from scout_exp.attribution.base import upsample  # noqa: E402
from scout_exp.attribution.rise import check_rise_settings, rise_maps, rise_masks  # noqa: E402
from scout_exp.errors import UserError  # noqa: E402
from scout_exp.explain.figures import SIGNED_CMAP, Canvas, draw_map, save_png  # noqa: E402
from scout_exp.io import save_npz  # noqa: E402
from scout_exp.modes import frozen_eval  # noqa: E402

#: evidence mass (similar + different, summed over the map) below which a side has no evidence
DEGENERATE_MASS = 1e-9
#: black-box methods: they call ``embed(images)`` only
BLACK_BOX = ("rise",)
SIDES = ("probe", "reference")


@dataclass
class VerificationExplanation:
    """A batch of explained pairs; evidence maps are non-negative, (2, B, h, w): side (probe, reference), pair."""

    cosine: Tensor  # (B,) cos(f(x_p), f(x_r))
    distance: Tensor  # (B,) ||f(x_p) - f(x_r)||, the raw descriptors' Euclidean distance
    similar: Tensor  # (2, B, h, w) evidence that raises the cosine
    different: Tensor  # (2, B, h, w) evidence that lowers the cosine

    @property
    def probe_map(self) -> Tensor:
        """Signed map of the probe (similar minus different), (B, h, w)."""
        return self.similar[0] - self.different[0]

    @property
    def reference_map(self) -> Tensor:
        """Signed map of the reference (similar minus different), (B, h, w)."""
        return self.similar[1] - self.different[1]

    def degenerate(self) -> Tensor:
        """(2, B) bool: sides whose total evidence mass is below :data:`DEGENERATE_MASS`."""
        return (self.similar.sum(dim=(-2, -1)) + self.different.sum(dim=(-2, -1))) < DEGENERATE_MASS


class VerificationExplainer:
    """Similar/different evidence maps of face-verification pairs with any attribution method.

    ``attribution``: a registered method (``gradxact``, ``gradcam``, ...), ``pgc:<Class>``,
    ``captum:<LayerMethod>``, or ``rise``. ``method_kwargs`` go to the method; for ``rise``:
    ``masks`` (N), ``grid``, ``keep`` (p), ``batch_size`` (masked images per forward) and ``seed``.
    ``rise`` accepts any callable ``embed`` and refuses a layer (it has none to read).
    """

    def __init__(
        self,
        embedder: nn.Module | Callable[[Tensor], Tensor],
        target_layer: str | nn.Module | None = None,
        attribution: str = "gradxact",
        **method_kwargs: Any,
    ) -> None:
        self.embedder = embedder
        self.attribution = attribution
        self.method: Any = None
        if attribution in BLACK_BOX:
            if target_layer is not None:
                raise UserError(
                    f"attribution={attribution} is a black-box method: it masks the input and reads no layer; "
                    f"drop attribution.layer={target_layer}"
                )
            self.rise = {"masks": 1000, "grid": 7, "keep": 0.5, "batch_size": 64, "seed": 0, **method_kwargs}
            check_rise_settings(
                *(int(self.rise[k]) for k in ("masks", "grid")), float(self.rise["keep"]), int(self.rise["batch_size"])
            )
            self.layer_name = None
            return
        if not isinstance(embedder, nn.Module):
            raise UserError(
                f"attribution={attribution} reads a layer, but the embedder is a plain function; use attribution=rise"
            )
        if attribution == "gradxact":
            method_kwargs = {"clamp_negative": False, **method_kwargs}
        self.method = create_attribution(attribution, embedder, target_layer, **method_kwargs)
        self.layer_name = self.method.layer_name

    @property
    def description(self) -> str:
        """The method in words, for figure titles."""
        if self.method is None:
            return f"RISE ({self.rise['masks']} masks, grid {self.rise['grid']}, keep {self.rise['keep']})"
        return f"{self.attribution} at {self.layer_name}"

    def _embed(self, x: Tensor) -> Tensor:
        out = self.embedder(x)
        if not isinstance(out, Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(f"the embedder must output (B, D) descriptors, got {shape}")
        return out

    def embed_no_grad(self, x: Tensor) -> Tensor:
        """(B, D) float descriptors of ``x`` in eval mode, without autograd."""
        module = self.embedder if isinstance(self.embedder, nn.Module) else nn.Identity()
        with frozen_eval(module), torch.no_grad():
            return self._embed(x).float()

    def explain(self, probe: Tensor, reference: Tensor) -> VerificationExplanation:
        """Explain each ``(probe[b], reference[b])`` pair in both directions (module docstring)."""
        if probe.shape != reference.shape:
            raise UserError(
                f"probe and reference batches differ in shape: {tuple(probe.shape)} vs {tuple(reference.shape)}"
            )
        batch = probe.shape[0]
        x = torch.cat([probe, reference])
        module = self.embedder if isinstance(self.embedder, nn.Module) else nn.Identity()
        descriptors = self.embed_no_grad(x)
        # float64 cosines: at a pair of identical images the gradient is exactly 0 up to float64 rounding
        unit = F.normalize(descriptors.double(), dim=1)
        partner = torch.cat([unit[batch:], unit[:batch]])
        if self.method is None:
            with frozen_eval(module):
                signed = self._rise(x, partner)
            similar, different = signed.clamp(min=0), (-signed).clamp(min=0)
        else:

            def targets(out: Tensor) -> Tensor:
                if out.dim() != 2:
                    raise UserError(f"the embedder must output (B, D) descriptors, got shape {tuple(out.shape)}")
                # row r belongs to sample r mod 2B (the adapters' convention for repeated rows)
                rows = torch.arange(out.shape[0], device=out.device) % partner.shape[0]
                q = (F.normalize(out.double(), dim=1) * partner[rows]).sum(dim=1)
                return torch.stack([q, -q], dim=1)

            maps = self.method(x, targets).float()
            similar, different = maps[:, 0].clamp(min=0), maps[:, 1].clamp(min=0)
        return VerificationExplanation(
            cosine=(unit[:batch] * unit[batch:]).sum(dim=1).float(),
            distance=(descriptors[:batch] - descriptors[batch:]).norm(dim=1),
            similar=torch.stack([similar[:batch], similar[batch:]]),
            different=torch.stack([different[:batch], different[batch:]]),
        )

    def _rise(self, x: Tensor, partner: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(int(self.rise["seed"]))
        masks = rise_masks(
            int(self.rise["masks"]), int(self.rise["grid"]), float(self.rise["keep"]), tuple(x.shape[-2:]), generator
        )

        def score(masked: Tensor, sample: Tensor) -> Tensor:
            return (F.normalize(self._embed(masked).double(), dim=1) * partner[sample]).sum(dim=1)

        return rise_maps(score, x, masks, float(self.rise["keep"]), int(self.rise["batch_size"]))


def side_record(similar: Tensor | np.ndarray, different: Tensor | np.ndarray) -> dict[str, Any]:
    """Evidence masses of one side and the share of similar evidence (None when degenerate)."""
    s, d = float(similar.sum()), float(different.sum())
    degenerate = s + d < DEGENERATE_MASS
    return {
        "similar_mass": s,
        "different_mass": d,
        "similar_share": None if degenerate else s / (s + d),
        "degenerate": degenerate,
    }


def pair_record(e: VerificationExplanation, b: int, threshold: float | None) -> dict[str, Any]:
    """JSON-ready scores of pair ``b``: cosine, distance, decision, and each side's evidence masses and shares."""
    record: dict[str, Any] = {"cosine": float(e.cosine[b]), "distance": float(e.distance[b])}
    if threshold is not None:
        record["distance_threshold"] = float(threshold)
        record["same_person"] = bool(e.distance[b] < threshold)
    for k, side in enumerate(SIDES):
        record[side] = side_record(e.similar[k, b], e.different[k, b])
    return record


def image_size_maps(e: VerificationExplanation, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Similar and different evidence brought to the input ``size``: two (2, B, H, W) float arrays."""
    return tuple(upsample(m, size).float().cpu().numpy() for m in (e.similar, e.different))  # type: ignore[return-value]


def save_verification_figure(
    path: Path,
    images: Sequence[np.ndarray],
    similar: Sequence[np.ndarray],
    different: Sequence[np.ndarray],
    labels: Sequence[str],
    title: str,
) -> Path:
    """One row per image (probe, reference): the image, its similar (red) and different (blue) evidence,
    and the signed map (similar - different, diverging around 0, red: similar), on one colour scale
    per row, each with a colour bar. A row without evidence (degenerate) says so instead of showing
    empty maps. ``images`` (H, W, 3) uint8; maps (H, W) float at image size. Drawn like the pair
    figure (:func:`scout_exp.explain.figures.draw_map`: one axes, no pyplot state).
    """
    return save_png(draw_verification_figure(images, similar, different, labels, title), path)


def draw_verification_figure(
    images: Sequence[np.ndarray],
    similar: Sequence[np.ndarray],
    different: Sequence[np.ndarray],
    labels: Sequence[str],
    title: str,
) -> Figure:
    """The figure :func:`save_verification_figure` writes, as a :class:`Figure` (tests read it)."""
    cell_w, cell_h, panel, top_margin = 2.05, 2.3, 1.55, 0.4
    fw, fh = 4 * cell_w, cell_h * len(images) + top_margin
    canvas = Canvas(fw, fh)
    for r, (image, sim, diff, label) in enumerate(zip(images, similar, different, labels), start=1):
        total = float(sim.sum() + diff.sum())
        scale = float(max(sim.max(), diff.max())) or 1.0
        top = top_margin + (r - 1) * cell_h + 0.5

        def caption(c: int, text: str, top: float = top) -> None:
            canvas.text(c * cell_w + 0.12 + panel / 2, top - 0.03, text, fontsize=7, ha="center", va="bottom")

        canvas.image(image, 0.12, top, panel, panel, gid=f"image:{r}")
        caption(0, label)
        degenerate = total < DEGENERATE_MASS
        panels = (
            (sim, (Normalize(0, scale), "Reds"), "similar", f"similar ({sim.sum() / (total or 1):.0%})"),
            (diff, (Normalize(0, scale), "Blues"), "different", f"different ({diff.sum() / (total or 1):.0%})"),
            (sim - diff, (Normalize(-scale, scale), SIGNED_CMAP), "signed", "signed: similar - different"),
        )
        for c, (m, norm_cmap, key, text) in enumerate(panels, start=1):
            left = c * cell_w + 0.12
            if degenerate:
                canvas.image(image, left, top, panel, panel, gid=f"image:{r}:{key}")
                caption(
                    c,
                    f"{key}: none (degenerate)"
                    if c < 3
                    else "no evidence: |map| < 1e-9\n(e.g. an image against itself)",
                )
                continue
            draw_map(canvas, image, np.asarray(m, dtype=np.float32), left, top, f"map:{r}:{key}", norm_cmap)
            caption(c, text)
    canvas.fig.suptitle(title, fontsize=8, y=1 - 0.06 / fh, va="top", wrap=True)
    return canvas.fig


def explain_pairs(
    explainer: VerificationExplainer,
    dataset: Any,
    out_dir: Path,
    threshold: float | None = None,
    batch_size: int = 16,
    max_figures: int = 16,
    save_maps: bool = False,
) -> list[dict[str, Any]]:
    """Explain every pair of a :class:`scout_exp.explain.pairs.PairDataset`; write figures (and maps)."""
    missing = [p.name for p in dataset.pairs if p.image_2 is None]
    if missing:
        raise UserError(f"mode=verify needs two images per pair; {', '.join(missing[:3])} has one")
    device = embedder_device(explainer.embedder)
    records = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        x1, x2 = batch["x1"].to(device), batch["x2"].to(device)
        e = explainer.explain(x1, x2)
        similar, different = image_size_maps(e, tuple(x1.shape[-2:]))
        for b, index in enumerate(batch["index"].tolist()):
            pair = dataset.pairs[index]
            record = {
                "pair": pair.name,
                "images": [str(pair.image_1), str(pair.image_2)],
                **pair_record(e, b, threshold),
            }
            if index < max_figures:
                images = [dataset.preprocess.invert(x1[b]), dataset.preprocess.invert(x2[b])]
                verdict = ""
                if "same_person" in record:
                    verdict = (
                        f", {'same person' if record['same_person'] else 'different people'} (threshold {threshold:g})"
                    )
                title = (
                    f"{pair.name}: cosine {record['cosine']:.3f}, distance {record['distance']:.3f}{verdict}; "
                    f"{explainer.description}"
                )
                labels = [f"probe: {Path(str(pair.image_1)).name}", f"reference: {Path(str(pair.image_2)).name}"]
                name = f"figures/{pair.name}_verify.png"
                save_verification_figure(
                    out_dir / name, images, list(similar[:, b]), list(different[:, b]), labels, title
                )
                record["figure"] = name
            if save_maps:
                name = f"maps/{pair.name}_verify.npz"
                save_npz(
                    out_dir / name,
                    probe=similar[0, b] - different[0, b],
                    reference=similar[1, b] - different[1, b],
                    probe_similar=similar[0, b],
                    probe_different=different[0, b],
                    reference_similar=similar[1, b],
                    reference_different=different[1, b],
                )
                record["maps"] = name
            records.append(record)
    return records


def embedder_device(embedder: Any) -> torch.device:
    """The device of an embedder's parameters (CPU for a plain function or a parameter-free module)."""
    params = embedder.parameters() if isinstance(embedder, nn.Module) else iter(())
    return next(params, torch.empty(0)).device
