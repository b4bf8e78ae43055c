"""CorrRISE: the rank correlation of each pixel's mask value with the similarity score (Lu, Xu and
Ebrahimi, WACV 2024).

Y. Lu, Z. Xu, T. Ebrahimi, "Towards Visual Saliency Explanations of Face Verification", WACV 2024,
pp. 4726-4735, arXiv:2305.08546 (https://openaccess.thecvf.com/content/WACV2024/html/Lu_Towards_Visual_Saliency_Explanations_of_Face_Verification_WACV_2024_paper.html).
A black box, like RISE (Petsiuk et al., BMVC 2018), but with another estimator and other masks:

- **Masks**: ``N`` binary masks, each 1 everywhere except ``patches`` square patches of
  ``patch_size`` x ``patch_size`` pixels set to 0 (hidden); a patch's top-left corner is drawn
  uniformly from ``[0, H - patch_size] x [0, W - patch_size]``, so every patch lies wholly inside
  the image (patches may overlap). Published setting: 3 patches of 30 x 30 px (on 112 x 112 faces).
- **One mask set for everything**: the reference code draws the set once and reuses it for every
  image and pair; here it is drawn from ``seed`` on every call, so every image, every pair and
  every run of the same size sees the same masks.
- **Map**: the probe is masked with each mask and scored by the cosine ``s_n`` to the partner's
  fixed embedding; the map at pixel ``(i, j)`` is Spearman's rank correlation, over the ``N``
  masks, between the mask value ``M_n(i, j)`` and ``s_n``: the Pearson correlation of the masks
  with the scores' ranks (average ranks for ties, as ``scipy.stats.rankdata``; ranking the binary
  mask values too would change nothing). Positive: keeping the pixel goes with a higher
  similarity (similar evidence); negative: with a lower one (different evidence). A pixel that
  no mask hides, or a set of scores that are all equal, has no correlation and gets 0.

Where the details come from: the rank correlation of masks and scores is the paper's method; the
mask construction (3 patches of 30 px, corners in ``[0, H - 30]``), the ranking of the scores
and the shared mask set from the authors' ``Corrise.py`` as transcribed in the equivalence tests
of Zhang and Günther's FAME reproduction (CVPR-W 2026), whose port defaults to 500 masks. Our
choices: the hidden pixels take ``baseline`` in the model's normalised input units (0, the
mean colour, as RISE and occlusion here; the reference multiplies its input tensor by the mask);
both images of a pair are explained, each against the other's fixed embedding; ``patch_size``
stays in pixels (a 30 px patch is 27% of a 112 px face's side: scale it for other input sizes).
Cost: ``N`` forwards per image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import register_attribution
from scout_exp.attribution.blackbox import BlackBoxAttribution
from scout_exp.errors import UserError


def patch_origins(
    n: int, patches: int, patch_size: int, size: tuple[int, int], generator: torch.Generator | None = None
) -> Tensor:
    """Top-left corners of ``patches`` patches for each of ``n`` masks: (n, patches, 2) long (row, col),
    uniform in ``[0, H - patch_size] x [0, W - patch_size]`` (drawn on CPU). ValueError when the patch
    does not fit in ``size`` (H, W)."""
    h, w = size
    if patch_size > min(h, w):
        raise ValueError(f"a {patch_size} px patch does not fit in a {h}x{w} image")
    rows = torch.randint(0, h - patch_size + 1, (n, patches), generator=generator)
    cols = torch.randint(0, w - patch_size + 1, (n, patches), generator=generator)
    return torch.stack([rows, cols], dim=-1)


def patch_masks(origins: Tensor, patch_size: int, size: tuple[int, int]) -> Tensor:
    """(n, H, W) float keep masks from (n, patches, 2) corners: 0 on every ``patch_size`` px square, 1 elsewhere."""
    h, w = size
    rows, cols = torch.arange(h), torch.arange(w)
    r0, c0 = origins[..., 0, None], origins[..., 1, None]  # (n, patches, 1)
    in_rows = (rows >= r0) & (rows < r0 + patch_size)  # (n, patches, H)
    in_cols = (cols >= c0) & (cols < c0 + patch_size)  # (n, patches, W)
    hidden = (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)  # (n, H, W)
    return (~hidden).float()


def average_ranks(values: Tensor) -> Tensor:
    """1-based ranks along the last dim, ties sharing their mean rank (``scipy.stats.rankdata``'s
    ``average``): same shape as ``values``, float64."""
    flat = values.reshape(-1, values.shape[-1])
    ranks = torch.empty(flat.shape, dtype=torch.float64, device=values.device)
    for row, out in zip(flat, ranks):
        ordered, order = row.sort()
        _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
        last = counts.cumsum(0).double()  # rank of each tie group's last member
        out[order] = (last - (counts - 1).double() / 2)[group]
    return ranks.reshape(values.shape)


def rank_correlation(scores: Tensor, masks: Tensor) -> Tensor:
    """Spearman correlation over the ``N`` masks of every pixel's mask value with every score.

    ``scores`` (..., N), ``masks`` (N, H, W) -> (..., H, W) in [-1, 1] (float64): the Pearson
    correlation of the mask values with the scores' average ranks; 0 where either is constant.
    """
    ranks = average_ranks(scores)
    ranks = ranks - ranks.mean(dim=-1, keepdim=True)
    m = masks.double().flatten(1)
    m = m - m.mean(dim=0, keepdim=True)
    cov = torch.einsum("...n,np->...p", ranks, m)
    denom = ranks.norm(dim=-1, keepdim=True) * m.norm(dim=0)
    corr = torch.where(denom > 0, cov / torch.where(denom > 0, denom, 1.0), torch.zeros_like(cov))
    return corr.reshape(*scores.shape[:-1], *masks.shape[-2:])


@register_attribution("corrrise")
class CorrRISE(BlackBoxAttribution):
    """CorrRISE maps (module docstring) of every target, from ``masks`` patch masks of ``seed``.

    Options: ``masks`` (N >= 3), ``patches`` per mask (>= 1), ``patch_size`` (px, >= 1; no larger
    than the input), ``baseline`` (value of hidden pixels, normalised input units), ``batch_size``
    (masked images per forward) and ``seed`` (the one mask set of every image, pair and call). Bad
    values are one-line UserErrors. In ``mode=scout`` it correlates the masks with the logits and
    the confidence score instead of the cosine.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        target_layer: str | nn.Module | None = None,
        masks: int = 500,
        patches: int = 3,
        patch_size: int = 30,
        baseline: float = 0.0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        if masks < 3:
            raise UserError(f"corrrise needs at least 3 masks to rank (attribution.kwargs.masks), got {masks}")
        if patches < 1:
            raise UserError(f"corrrise needs at least 1 patch per mask (attribution.kwargs.patches), got {patches}")
        if patch_size < 1:
            raise UserError(
                f"corrrise's patch_size (attribution.kwargs.patch_size) must be >= 1 pixel, got {patch_size}"
            )
        super().__init__(model, target_layer, batch_size)
        self.n_masks, self.patches, self.patch_size = int(masks), int(patches), int(patch_size)
        self.baseline, self.seed = float(baseline), int(seed)

    def describe(self) -> str:
        """E.g. ``CorrRISE (500 masks of 3 patches, 30 px)``."""
        return f"CorrRISE ({self.n_masks} masks of {self.patches} patches, {self.patch_size} px)"

    def masks(self, size: tuple[int, int]) -> Tensor:
        """The (N, H, W) patch masks drawn from ``seed`` (the same on every call); UserError when a
        patch is larger than the ``size`` (H, W) input."""
        if self.patch_size > min(size):
            raise UserError(
                f"corrrise's {self.patch_size} px patches do not fit in the {size[0]}x{size[1]} input; set "
                "attribution.kwargs.patch_size smaller (the published 30 px are for 112 px faces)"
            )
        generator = torch.Generator().manual_seed(self.seed)
        origins = patch_origins(self.n_masks, self.patches, self.patch_size, size, generator)
        return patch_masks(origins, self.patch_size, size)

    def estimate(self, scores: Tensor, masks: Tensor, unmasked: Tensor) -> Tensor:
        """Spearman maps: (B, T, N) scores and (N, H, W) masks -> (B, T, H, W) (:func:`rank_correlation`)."""
        return rank_correlation(scores, masks).to(scores.dtype)
