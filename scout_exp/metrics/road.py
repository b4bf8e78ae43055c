"""ROAD, most relevant first (Rong, Leemann et al., ICML 2022), batched in torch around quantus' imputation.

ROAD ("A Consistent and Efficient Evaluation Strategy for Attribution Methods") removes the most
important pixels of an image and fills them so that the removal itself leaks little information
about which pixels were removed: *noisy linear imputation*, each removed pixel becomes the
weighted mean of its 8 neighbours (1/6 for the 4 edge neighbours, 1/12 for the diagonal ones; at
the border only the neighbours inside the image count), the kept pixels are fixed, and Gaussian
noise is added to the imputed pixels. The means form one sparse linear system per image.

The system is solved by quantus' ``noisy_linear_imputation`` (one SciPy ``spsolve`` per image and
removal fraction, all channels at once). A batched conjugate-gradient solver in torch was tried
and dropped: at 112x112 with the contiguous holes a map removes, it needed 80-260 iterations and
was no faster on 2 CPU cores (0.95x). What is batched here is the rest: the removal masks of every
fraction from one ranking, the forward passes in chunks, and the noise from a seeded torch
generator (quantus draws it from NumPy's global state). ``tests/test_metrics_quantus.py`` checks
the whole protocol against ``quantus.ROAD``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor

from scout_exp.errors import UserError
from scout_exp.metrics.perturbation import ScoreFn, stage_scores

#: removal fractions of ROAD's curves (the paper's 10%, ..., 90%)
FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 10))


def noisy_linear_imputation(
    images: Tensor, removed: Tensor, noise: float = 0.01, generator: torch.Generator | None = None
) -> Tensor:
    """Fill the ``removed`` pixels of ``images`` (N, C, H, W) by noisy linear imputation.

    ``removed`` (N, H, W) or (N, 1, H, W) bool marks the pixels removed in all channels. The
    noise-free values solve ROAD's system (quantus' ``noisy_linear_imputation``); then ``noise``
    times standard normal noise drawn with ``generator`` is added to the removed pixels. Returns
    (N, C, H, W) in the input dtype and device; kept pixels are unchanged.
    Errors: UserError when an image has every pixel removed (nothing to impute from).
    """
    from quantus.functions.perturb_func import noisy_linear_imputation as solve

    n, c, h, w = images.shape
    gone = removed.reshape(n, 1, h, w).to(images.device)
    flat = gone.reshape(n, -1).cpu().numpy()
    if flat.all(1).any():
        raise UserError("noisy_linear_imputation: an image has every pixel removed; keep at least one")
    arrays = images.detach().cpu().double().numpy()
    # quantus annotates ``indices`` as a sequence or a tuple of arrays; it indexes a mask with them, so an array works
    filled = np.stack(
        [
            solve(arr=a, indices=cast(Sequence[int], np.flatnonzero(m)), noise=0.0) if m.any() else a
            for a, m in zip(arrays, flat)
        ]
    )
    eps = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return torch.where(gone, torch.from_numpy(filled).to(images) + noise * eps, images)


@torch.no_grad()
def road_curves(
    score_fn: ScoreFn,
    images: Tensor,
    maps: Tensor,
    *,
    fractions: tuple[float, ...] = FRACTIONS,
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """ROAD, most relevant first: curves (B, F) of ``score_fn`` after the ``fractions`` (F,) most
    important pixels are removed and imputed, and their mean over the fractions (B,) (low is good).

    ``score_fn``, ``images`` (B, C, H, W), ``maps`` (B, h, w) and ``batch_size`` as for
    :func:`scout_exp.metrics.perturbation_curves`; the noise of the imputation
    (:func:`noisy_linear_imputation`) is drawn from a generator seeded with ``seed``.
    Errors: UserError for a fraction outside (0, 1).
    """
    if not all(0 < f < 1 for f in fractions):
        raise UserError(f"ROAD removal fractions must lie in (0, 1), got {list(fractions)}")
    h, w = images.shape[-2:]
    counts = torch.tensor([round(f * h * w) for f in fractions])
    gen = torch.Generator(device=images.device).manual_seed(seed)
    curves = stage_scores(
        score_fn,
        images,
        maps,
        counts,
        lambda r, removed: noisy_linear_imputation(images[r], removed, noise, gen),
        batch_size,
    )
    return curves.cpu(), curves.mean(1).cpu()
