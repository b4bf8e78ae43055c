"""Losses of interpretable face recognition (Yin et al., ICCV 2019; docs/method.md section 4).

All functions take batched tensors and are differentiable, so a training step can call them
directly. Cosines use norms clamped at ``eps`` so that an all-zero map or filter gives 0, not NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scout_exp.models.casianet import InterpOutput

GAUSSIAN_3X3 = torch.tensor(
    [
        [0.0947416, 0.118318, 0.0947416],
        [0.118318, 0.147761, 0.118318],
        [0.0947416, 0.118318, 0.0947416],
    ],
    dtype=torch.float64,
)
"""Fixed smoothing kernel of L_SAD: the reference code's normalised 3x3 Gaussian (sigma = 1.5)."""


def _mean_offdiag_cos2(vectors: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean of cos^2 over pairs i < j of the rows of ``vectors`` (..., n, d), per leading index."""
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(eps)
    cos2 = (unit @ unit.transpose(-1, -2)) ** 2
    n = vectors.shape[-2]
    off = cos2.sum(dim=(-1, -2)) - cos2.diagonal(dim1=-2, dim2=-1).sum(-1)
    return off / (n * (n - 1))


def spatial_activation_diversity(masked_maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L_SAD: smooth each filter's masked map with :data:`GAUSSIAN_3X3` (zero 'same' padding),
    flatten to ``s_i`` (h*w values), take the mean of ``cos^2(s_i, s_j)`` over filter pairs i < j,
    and average over the batch. ``masked_maps``: (B, C, h, w)."""
    b, c, h, w = masked_maps.shape
    kernel = GAUSSIAN_3X3.to(masked_maps).expand(c, 1, 3, 3)
    smooth = F.conv2d(masked_maps, kernel, padding=1, groups=c)
    return _mean_offdiag_cos2(smooth.reshape(b, c, h * w), eps).mean()


def filter_diversity(conv_weight: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L_filter: for each filter (C_in x k x k) of ``conv_weight`` (C_out, C_in, k, k), the mean
    ``cos^2`` over the k*k*(k*k-1)/2 pairs (36 for 3x3) of its spatial taps (C_in-vectors),
    averaged over the filters."""
    cout, cin, kh, kw = conv_weight.shape
    taps = conv_weight.reshape(cout, cin, kh * kw).transpose(1, 2)
    return _mean_offdiag_cos2(taps, eps).mean()


def feature_activation_diversity(
    f: torch.Tensor, f_occ: torch.Tensor, n_invariant: int = 260
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_FAD for a clean/occluded batch of features (B, D): ``Delta = mean_batch |f - f_occ|``.

    Returns ``(0.1 * sum of the n_invariant smallest Delta, sensitive)``, where ``sensitive`` is a
    boolean (D,) mask of the other ``D - n_invariant`` features, to be zeroed in ``f_occ`` before
    the occluded cross-entropy. Exactly ``n_invariant`` features are invariant: ties at the cut go
    to the lower feature index (the reference's ``>`` test could keep more on ties).
    """
    if f.shape != f_occ.shape or f.dim() != 2:
        raise ValueError(f"f and f_occ must both be (B, D), got {tuple(f.shape)} and {tuple(f_occ.shape)}")
    d = f.shape[1]
    if not 0 < n_invariant <= d:
        raise ValueError(f"n_invariant must be in [1, {d}], got {n_invariant}")
    delta = (f - f_occ).abs().mean(dim=0)
    order = torch.sort(delta.detach(), stable=True).indices
    invariant = order[:n_invariant]
    sensitive = torch.ones(d, dtype=torch.bool, device=f.device)
    sensitive[invariant] = False
    return 0.1 * delta[invariant].sum(), sensitive


@dataclass(frozen=True)
class InterpLossWeights:
    """Weights of the terms of the total loss; docs/method.md defaults. Set a weight to 0 to drop a term.

    Presets: base = ``InterpLossWeights(2, 0, 0, 0, 0, 0)``; SAD only =
    ``InterpLossWeights(2, 0, 100, 1, 0, 0)``; SAD + FAD = the defaults.
    """

    ce_clean: float = 2.0
    ce_occluded: float = 2.0
    filter: float = 100.0
    sad_clean: float = 1.0
    sad_occluded: float = 1.0
    fad: float = 1.0


def interp_total_loss(
    clean: InterpOutput,
    labels: torch.Tensor,
    conv_weight: torch.Tensor | None = None,
    occluded: InterpOutput | None = None,
    classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
    weights: InterpLossWeights = InterpLossWeights(),
    n_invariant: int = 260,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss = w_ce_clean CE(clean) + w_ce_occ CE(occluded, masked) + w_filter L_filter
    + w_sad_clean L_SAD(clean) + w_sad_occ L_SAD(occluded) + w_fad L_FAD (docs/method.md section 4).

    ``classify`` maps a 320-d feature to logits (``CasiaNetInterp.classify``: dropout + fc); the
    occluded CE uses ``classify(f_occ * ~sensitive)``. Terms whose weight is 0 are not computed;
    ``occluded``/``classify``/``conv_weight`` are needed only by the terms that use them.
    Returns the total and a dict of the (unweighted) terms that were computed, detached.
    """
    terms: dict[str, torch.Tensor] = {}
    total = clean.logits.new_zeros(())
    if weights.ce_clean:
        terms["ce_clean"] = F.cross_entropy(clean.logits, labels)
        total = total + weights.ce_clean * terms["ce_clean"]
    if weights.filter:
        if conv_weight is None:
            raise ValueError("the filter-diversity term needs conv_weight")
        terms["filter"] = filter_diversity(conv_weight)
        total = total + weights.filter * terms["filter"]
    if weights.sad_clean:
        terms["sad_clean"] = spatial_activation_diversity(clean.masked_map)
        total = total + weights.sad_clean * terms["sad_clean"]
    if weights.ce_occluded or weights.sad_occluded or weights.fad:
        if occluded is None:
            raise ValueError("occluded-image terms have non-zero weight but no occluded output was given")
        if weights.sad_occluded:
            terms["sad_occluded"] = spatial_activation_diversity(occluded.masked_map)
            total = total + weights.sad_occluded * terms["sad_occluded"]
        if weights.ce_occluded or weights.fad:
            fad, sensitive = feature_activation_diversity(clean.feature, occluded.feature, n_invariant)
            if weights.fad:
                terms["fad"] = fad
                total = total + weights.fad * fad
            if weights.ce_occluded:
                if classify is None:
                    raise ValueError("the occluded cross-entropy needs classify (e.g. model.classify)")
                logits_occ = classify(occluded.feature * (~sensitive).to(occluded.feature))
                terms["ce_occluded"] = F.cross_entropy(logits_occ, labels)
                total = total + weights.ce_occluded * terms["ce_occluded"]
    return total, {k: v.detach() for k, v in terms.items()}
