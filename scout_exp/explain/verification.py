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
scores; for a black-box method (:mod:`scout_exp.attribution.blackbox`: RISE, occlusion) the maps
of ``q`` and ``-q`` from one set of masked copies, e.g. the positive and negative parts of the
mean-centred RISE map, or of the CorrRISE rank-correlation map. Built-in layer methods run as two
targets of one batched backward (:mod:`scout_exp.attribution.base`); ``pgc:`` and ``captum:``
adapters run the third-party code. A pair method (:mod:`scout_exp.attribution.pairwise`: FGGB)
needs more than the cosine: it is handed the partner embeddings and returns its similar and
different evidence itself (FGGB's similarity and dissimilarity maps).

A side whose evidence mass is below :data:`DEGENERATE_MASS` is *degenerate*: there is nothing to
share out (e.g. a photo verified against itself sits at the maximum of the cosine, where every
gradient is zero), so its shares are ``null`` and its figure says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scout_exp.attribution import attribution_class, create_attribution
from scout_exp.attribution.base import upsample
from scout_exp.attribution.pairwise import PairAttribution
from scout_exp.attribution.registry import black_box_methods
from scout_exp.errors import UserError
from scout_exp.modes import frozen_eval

#: evidence mass (similar + different, summed over the map) below which a side has no evidence
DEGENERATE_MASS = 1e-9
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

    ``attribution``: a registered method (``gradxact``, ``gradcam``, ``rise``, ...), ``pgc:<Class>``
    or ``captum:<LayerMethod>``. ``method_kwargs`` go to the method's constructor, over the
    options the method asks for in verification (its ``verification_options``, e.g. signed
    gradient x activation). A black-box method (``reads_layer`` False) accepts any callable
    ``embedder`` and refuses a layer; a layer method refuses a plain function (one-line UserErrors).
    A pair method (FGGB) reads no layer either but differentiates the embedder at its input: any
    differentiable callable works, and one that gives no gradient is a one-line UserError.
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
        cls = attribution_class(attribution)
        if cls.reads_layer and not isinstance(embedder, nn.Module):
            black_boxes = " or ".join(f"attribution={name}" for name in black_box_methods())
            raise UserError(
                f"attribution={attribution} reads a layer, but the embedder is a plain function; "
                f"use a black-box method: {black_boxes}"
            )
        options = {**cls.verification_options, **method_kwargs}
        self.method = create_attribution(attribution, embedder, target_layer, **options)
        self.layer_name = self.method.layer_name

    @property
    def description(self) -> str:
        """The method in words, for figure titles."""
        return self.method.describe()

    @staticmethod
    def _descriptors(out: Any) -> Tensor:
        """``out`` when it is a (B, D) tensor of descriptors; UserError otherwise."""
        if not isinstance(out, Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(f"the embedder must output (B, D) descriptors, got {shape}")
        return out

    def _embed(self, x: Tensor) -> Tensor:
        return self._descriptors(self.embedder(x))

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
        descriptors = self.embed_no_grad(x)
        # float64 cosines: at a pair of identical images the gradient is exactly 0 up to float64 rounding
        unit = F.normalize(descriptors.double(), dim=1)
        partner = torch.cat([unit[batch:], unit[:batch]])

        def targets(out: Any) -> Tensor:
            out = self._descriptors(out)
            # row r belongs to sample r mod 2B (every method's convention for repeated rows)
            rows = torch.arange(out.shape[0], device=out.device) % partner.shape[0]
            q = (F.normalize(out.double(), dim=1) * partner[rows]).sum(dim=1)
            return torch.stack([q, -q], dim=1)

        if isinstance(self.method, PairAttribution):
            maps = self.method.explain_pair(x, partner).float()
        else:
            maps = self.method(x, targets).float()
        similar, different = maps[:, 0].clamp(min=0), maps[:, 1].clamp(min=0)
        return VerificationExplanation(
            cosine=(unit[:batch] * unit[batch:]).sum(dim=1).float(),
            distance=(descriptors[:batch] - descriptors[batch:]).norm(dim=1),
            similar=torch.stack([similar[:batch], similar[batch:]]),
            different=torch.stack([different[:batch], different[batch:]]),
        )


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


def embedder_device(embedder: Any) -> torch.device:
    """The device of an embedder's parameters (CPU for a plain function or a parameter-free module)."""
    params = embedder.parameters() if isinstance(embedder, nn.Module) else iter(())
    return next(params, torch.empty(0)).device
