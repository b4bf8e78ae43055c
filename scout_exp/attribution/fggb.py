"""FGGB: Feature-Guided Gradient Backpropagation (Lu, Xu and Ebrahimi, IEEE FG 2024).

Y. Lu, Z. Xu, T. Ebrahimi, "Explainable Face Verification via Feature-Guided Gradient
Backpropagation", FG 2024, arXiv:2403.04549 (https://arxiv.org/abs/2403.04549). For an image
``x`` explained against its partner (the other image of the pair, embedding ``f_B``):

1. **Gradients of every embedding dimension, after L2 normalisation.** ``u = f(x) / ||f(x)||``
   and, for each of the ``D`` dimensions, ``G_k = d u_k / d x`` at the input (the paper's
   ``G_A^k = dF_A^k / dI_A``). The reference code normalises the embedding *before* it
   back-propagates (``_normalize_embedding`` then ``f_a[0, k].backward()``), so the
   normalisation's coupling of the dimensions is part of every ``G_k``.
2. **One map per dimension.** ``g_k = mean over colour channels of |G_k|``, divided by its own L2
   norm over the image (``+ 1e-8``): the paper's normalised ``G~_A^k``; absolute value, channel
   mean and the L2 norm are those of the reference code.
3. **Feature guidance by the pair.** ``w_k = u_k * v_k`` with ``v = f_B / ||f_B||`` (the two
   normalised embeddings' element-wise product; the ``w_k`` sum to the cosine) minus
   ``theta / D``: ``theta``, the verification threshold on the cosine, shared out evenly over the
   ``D`` dimensions. A dimension with ``u_k v_k > theta / D`` is a *similar* dimension (positive
   weight), any other a *dissimilar* one (negative or zero weight).
4. ``S = sum_k (u_k v_k - theta / D) g_k`` (paper: ``S_A = sum_k G~_A^k (w_k - threshold / N)``);
   the similarity map is ``S+ = max(S, 0)``, the dissimilarity map ``S- = max(-S, 0)``: where the
   similar dimensions' gradient maps outweigh the dissimilar ones' and the other way round.
5. The reference code blurs each of the two maps with a Gaussian (kernel 25 px, sigma 5 px)
   before saving them: ``blur_kernel`` / ``blur_sigma`` (``blur_kernel=0`` keeps them raw).

Where the details come from: steps 3-4 from the paper's equations (as summarised at
https://www.sciencestack.ai/paper/2403.04549); the normalisation before the gradient, absolute
value, channel mean, per-dimension L2 norm, ``theta / D`` and the 25 / 5 blur from the authors'
``code_fggb.py`` as transcribed literally in the equivalence tests of Zhang and Günther's FAME
reproduction (CVPR-W 2026), which also records that ``theta`` is the model's EER threshold on the
protocol being explained. Our choices: ``theta`` is an option (``threshold``, default 0: no such
protocol is known here; set it to your model's threshold on the cosine); the blur pads by
reflection (OpenCV's default border; edge replication for maps smaller than the kernel's
radius); the ``D`` gradients are taken ``dimensions_per_pass`` at a time with one batched
``torch.autograd.grad(..., is_grads_batched=True)`` per chunk (a loop over the chunk's dimensions
where an operator has no batching rule); the maps are not min-max scaled (their masses give
``similar_share``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scout_exp.attribution.base import register_attribution
from scout_exp.attribution.pairwise import PairAttribution
from scout_exp.errors import UserError
from scout_exp.modes import frozen_eval

#: added to each dimension map's L2 norm before dividing by it (as in the reference code)
NORM_EPS = 1e-8


def gaussian_blur(maps: Tensor, kernel: int, sigma: float) -> Tensor:
    """Gaussian blur of the last two dims of ``maps`` (..., H, W): a ``kernel`` x ``kernel`` px
    kernel of std ``sigma`` px, ``exp(-(i - (kernel - 1) / 2)^2 / (2 sigma^2))`` normalised to sum 1
    (OpenCV's ``getGaussianKernel`` for a given sigma), applied separably with reflected borders
    (OpenCV's ``BORDER_REFLECT_101``) or replicated ones for a map smaller than the kernel radius.
    ``kernel`` odd and >= 1 (1: no blur); ValueError otherwise."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"the blur kernel must be odd and >= 1, got {kernel}")
    if kernel == 1:
        return maps
    h, w = maps.shape[-2:]
    offsets = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * sigma**2))
    g = (g / g.sum()).to(maps.dtype).to(maps.device)
    pad = kernel // 2
    mode = "reflect" if pad < min(h, w) else "replicate"
    flat = maps.reshape(-1, 1, h, w)
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode=mode), g.view(1, 1, 1, kernel))
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode=mode), g.view(1, 1, kernel, 1))
    return flat.reshape(maps.shape)


def dimension_gradients(unit: Tensor, x: Tensor, start: int, stop: int) -> Tensor:
    """``d unit[:, k] / d x`` for ``k`` in ``start:stop``: (stop - start, N, C, H, W).

    ``unit`` (N, D) must come from ``x`` (N, C, H, W) through a graph of independent samples
    (a network in eval mode), so the gradient of the batch sum of ``unit[:, k]`` is every sample's
    own. One batched ``autograd.grad`` (``is_grads_batched``); a loop over ``k`` if an operator has no
    batching rule. Raises UserError when ``unit`` does not depend on ``x``.
    """
    k, (n, d) = stop - start, unit.shape
    seeds = torch.zeros(k, n, d, dtype=unit.dtype, device=unit.device)
    seeds[torch.arange(k), :, torch.arange(start, stop)] = 1
    grads: Tensor | None
    try:
        (grads,) = torch.autograd.grad(unit, x, seeds, retain_graph=True, is_grads_batched=True, allow_unused=True)
    except RuntimeError:
        per_dim = [torch.autograd.grad(unit, x, seeds[j], retain_graph=True, allow_unused=True)[0] for j in range(k)]
        grads = None if any(g is None for g in per_dim) else torch.stack(per_dim)
    if grads is None:
        raise UserError("the embedding does not depend on the input image, so it has no gradient to back-propagate")
    return grads


def fggb_saliency(
    embed: Callable[[Tensor], Any], x: Tensor, partner: Tensor, threshold: float, dimensions_per_pass: int = 64
) -> Tensor:
    """FGGB's signed saliency ``S = sum_k (u_k v_k - theta / D) g_k`` (module docstring, steps 1-4).

    ``embed``: (N, C, H, W) -> (N, D) descriptors, differentiable in its input (an ``nn.Module`` runs
    in eval mode with frozen parameters); ``x`` (N, C, H, W) the images; ``partner`` (N, D) the
    unit-norm embeddings ``v`` of their partners; ``threshold`` ``theta``, on the cosine (unitless).
    Returns (N, H, W) float maps at the input resolution: > 0 similar, < 0 dissimilar evidence.
    Raises UserError when the embedding carries no gradient back to the input (a black-box
    model, e.g. ONNX run by onnxruntime) or is not (N, D).
    """
    guard: AbstractContextManager[Any] = frozen_eval(embed) if isinstance(embed, nn.Module) else nullcontext()
    x = (x.detach().clone() if x.is_inference() else x.detach()).requires_grad_(True)
    with guard, torch.inference_mode(False), torch.enable_grad():
        out = embed(x)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UserError(f"fggb needs (N, D) descriptors from the embedder, got {shape}")
        if not out.requires_grad:
            raise UserError(
                "attribution=fggb back-propagates the embedding to the input, but this embedder gives no "
                "gradient (a black-box model, e.g. model.kwargs.runtime=onnxruntime); use a black-box method: "
                "attribution=corrrise, occlusion or rise"
            )
        unit = F.normalize(out, dim=1)
        n, d = unit.shape
        dtype = torch.promote_types(x.dtype, torch.float32)
        weights = (unit.detach().double() * partner.to(unit.device).double() - threshold / d).to(dtype)
        saliency = torch.zeros(n, *x.shape[-2:], dtype=dtype, device=x.device)
        for start in range(0, d, dimensions_per_pass):
            stop = min(d, start + dimensions_per_pass)
            g = dimension_gradients(unit, x, start, stop).abs().to(dtype).mean(dim=2)  # (k, N, H, W)
            g = g / (g.flatten(2).norm(dim=2)[..., None, None] + NORM_EPS)
            saliency += torch.einsum("knhw,nk->nhw", g, weights[:, start:stop])
    return saliency


@register_attribution("fggb")
class FGGB(PairAttribution):
    """FGGB similarity and dissimilarity maps of each image of a pair (module docstring).

    Options: ``threshold`` (``theta``, the verification threshold on the cosine, in [-1, 1]),
    ``blur_kernel`` (odd px, 0 or 1: no blur) and ``blur_sigma`` (px, > 0) of the Gaussian applied to
    each map, and ``dimensions_per_pass`` (embedding dimensions per batched backward: memory
    ``dimensions_per_pass x N x C x H x W`` floats). Bad values are one-line UserErrors. Only
    ``mode=verify`` can use it (:class:`scout_exp.attribution.pairwise.PairAttribution`).
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        target_layer: str | nn.Module | None = None,
        threshold: float = 0.0,
        blur_kernel: int = 25,
        blur_sigma: float = 5.0,
        dimensions_per_pass: int = 64,
    ) -> None:
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and -1 <= threshold <= 1):
            raise UserError(f"fggb's threshold (attribution.kwargs.threshold) is a cosine in [-1, 1], got {threshold}")
        if not isinstance(blur_kernel, int) or blur_kernel < 0 or (blur_kernel > 1 and blur_kernel % 2 == 0):
            raise UserError(
                f"fggb's blur_kernel (attribution.kwargs.blur_kernel) must be an odd number of pixels, or 0 for "
                f"no blur; got {blur_kernel}"
            )
        if not blur_sigma > 0:
            raise UserError(f"fggb's blur_sigma (attribution.kwargs.blur_sigma) must be > 0 pixels, got {blur_sigma}")
        if not isinstance(dimensions_per_pass, int) or dimensions_per_pass < 1:
            raise UserError(
                f"fggb's dimensions_per_pass (attribution.kwargs.dimensions_per_pass) must be >= 1, got "
                f"{dimensions_per_pass}"
            )
        super().__init__(model, target_layer)
        self.threshold, self.blur_kernel, self.blur_sigma = float(threshold), max(1, blur_kernel), float(blur_sigma)
        self.dimensions_per_pass = dimensions_per_pass

    def describe(self) -> str:
        """E.g. ``FGGB (threshold 0.3 on the cosine, blur 25 px, sigma 5)``."""
        blur = f"blur {self.blur_kernel} px, sigma {self.blur_sigma:g}" if self.blur_kernel > 1 else "no blur"
        return f"FGGB (threshold {self.threshold:g} on the cosine, {blur})"

    def explain_pair(self, x: Tensor, partner: Tensor) -> Tensor:
        """(N, C, H, W) images, (N, D) unit partner embeddings -> (N, 2, H, W): ``S+`` and ``S-``, blurred."""
        s = fggb_saliency(self.model, x, partner, self.threshold, self.dimensions_per_pass)
        maps = torch.stack([s.clamp(min=0), (-s).clamp(min=0)], dim=1)
        return gaussian_blur(maps, self.blur_kernel, self.blur_sigma)
