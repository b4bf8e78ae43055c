"""Black-box attribution: maps from the scores of masked copies of the input; no layer, no gradient.

A black-box method only calls the model. It draws ``M`` keep masks ``m_n`` (H, W) in [0, 1]
(1 keeps a pixel, 0 replaces it by the baseline value), scores every copy
``x * m_n + baseline * (1 - m_n)`` with the caller's targets, and turns the scores into maps.
It is called like every other method, ``method(x, targets)``, and returns (B, T, H, W) maps at the
input resolution.

A new method subclasses :class:`BlackBoxAttribution` and overrides :meth:`~BlackBoxAttribution.masks`
(which copies to score), as a pytorch-grad-cam ``BaseCAM`` subclass overrides one weighting
function; the default :meth:`~BlackBoxAttribution.estimate` is the occlusion estimator (how much the
score drops when a pixel is hidden). A method with another estimator also overrides ``estimate``,
as RISE does (:mod:`scout_exp.attribution.rise`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import BaseAttribution, TargetFn
from scout_exp.errors import UserError
from scout_exp.modes import frozen_eval


class BlackBoxAttribution(BaseAttribution):
    """A perturbation method: subclasses define :meth:`masks` (and optionally :meth:`estimate`).

    ``model`` may be any callable (an ``nn.Module`` is run in eval mode with frozen parameters);
    ``target_layer`` must be None (a black box reads no layer; UserError otherwise). The model is
    called under ``torch.no_grad`` on ``batch_size`` masked images at a time, rounded down to whole
    copies of the batch and at least one copy: ``targets`` reads row ``r`` of every call as sample
    ``r mod B`` (the rows are mask-major).
    """

    uses_engine = False
    reads_layer = False
    # BaseAttribution types these for a layer method; a black box calls any callable and reads no layer
    model: Callable[[Tensor], Any]  # type: ignore[assignment]  # a Module or a plain function
    layer_name: None  # type: ignore[assignment]  # no layer
    layer: None  # type: ignore[assignment]  # no layer
    #: value of the hidden pixels, in the model's (normalised) input units; 0 is the mean colour
    baseline: float = 0.0

    def __init__(
        self, model: Callable[[Tensor], Any], target_layer: str | nn.Module | None = None, batch_size: int = 64
    ) -> None:
        if target_layer is not None:
            layer = target_layer if isinstance(target_layer, str) else type(target_layer).__name__
            raise UserError(
                f"attribution={self.name} is a black-box method: it masks the input and reads no layer; "
                f"drop attribution.layer={layer}"
            )
        if batch_size < 1:
            raise UserError(f"{self.name}'s batch_size (attribution.kwargs.batch_size) must be >= 1, got {batch_size}")
        self.model = model
        self.layer_name = None
        self.layer = None
        self.batch_size = int(batch_size)

    def describe(self) -> str:
        """The method in words, for figure titles."""
        return f"{self.name} (black box)"

    def masks(self, size: tuple[int, int]) -> Tensor:
        """(M, H, W) keep masks in [0, 1] for an input of ``size`` (H, W) pixels; on any device."""
        raise NotImplementedError(f"{type(self).__name__} must implement masks()")

    def estimate(self, scores: Tensor, masks: Tensor, unmasked: Tensor) -> Tensor:
        """Occlusion's estimator: (B, T, M) scores of the masked copies, (M, H, W) masks and (B, T)
        scores of the unmasked input -> (B, T, H, W) maps.

        ``S_ij = sum_n (s - s_n) (1 - m_n,ij) / sum_n (1 - m_n,ij)``: the mean drop of the score
        when pixel (i, j) is hidden, over the copies that hide it (0 where none does).
        """
        hidden = 1 - masks
        drop = unmasked[..., None] - scores
        total = torch.einsum("btm,mhw->bthw", drop, hidden)
        count = hidden.sum(dim=0)
        return torch.where(count > 0, total / torch.where(count > 0, count, 1), torch.zeros_like(total))

    def perturb(self, x: Tensor, masks: Tensor) -> Tensor:
        """(B, C, H, W) images and (k, H, W) masks -> the (k B, C, H, W) masked copies, mask-major."""
        keep = masks[:, None, None]
        copies = x[None] * keep
        if self.baseline != 0:
            copies = copies + self.baseline * (1 - keep)
        return copies.flatten(0, 1)

    def __call__(self, x: Tensor, targets: TargetFn) -> Tensor:
        """(B, T, H, W) maps of every target of ``targets(model(x))`` (class docstring)."""
        batch, size = x.shape[0], (int(x.shape[-2]), int(x.shape[-1]))
        dtype = torch.promote_types(x.dtype, torch.float32)
        guard: AbstractContextManager[Any] = (
            frozen_eval(self.model) if isinstance(self.model, nn.Module) else nullcontext()
        )
        with guard, torch.no_grad():
            x = x.detach()
            unmasked = self._scores(x, targets, dtype)
            masks = self.masks(size).to(x.device)
            if masks.dim() != 3 or tuple(masks.shape[1:]) != size:
                raise ValueError(f"{type(self).__name__}.masks() must return (M, {size[0]}, {size[1]}) masks")
            step = max(1, self.batch_size // batch)
            pixels = masks.to(x.dtype)
            rows = [
                self._scores(self.perturb(x, pixels[start : start + step]), targets, dtype)
                for start in range(0, masks.shape[0], step)
            ]
            scores = torch.cat(rows).reshape(masks.shape[0], batch, -1).permute(1, 2, 0).contiguous()
            return self.estimate(scores, masks.to(dtype), unmasked)

    def _scores(self, x: Tensor, targets: TargetFn, dtype: torch.dtype) -> Tensor:
        """(N, T) target values of ``model(x)`` in ``dtype``; a (N,) target becomes (N, 1)."""
        q = targets(self.model(x))
        if not isinstance(q, Tensor):
            raise TypeError(f"targets must return a tensor, got {type(q).__name__}")
        q = q[:, None] if q.dim() == 1 else q
        if q.dim() != 2 or q.shape[0] != x.shape[0]:
            raise ValueError(f"targets must return shape (N, T) with N={x.shape[0]}, got {tuple(q.shape)}")
        return q.to(dtype)
