"""ROAD's noisy linear imputation: kept pixels exact, the stencil's properties, seeded noise, bad masks."""

from __future__ import annotations

import pytest
import torch

from scout_exp.errors import UserError
from scout_exp.metrics.road import noisy_linear_imputation


def random_masks(n: int, h: int, w: int, fraction: float, seed: int) -> torch.Tensor:
    """(n, h, w) masks, each removing exactly ``round(fraction * h * w)`` random pixels."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(h * w, generator=g) for _ in range(n)])
    return (order < round(fraction * h * w)).reshape(n, h, w)


def test_kept_pixels_exact_and_maximum_principle() -> None:
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    removed = random_masks(6, 12, 12, 0.7, seed=3)
    out = noisy_linear_imputation(x, removed, noise=0.0)
    kept = ~removed[:, None].expand_as(x)
    assert out.dtype == x.dtype
    assert torch.equal(out[kept], x[kept])
    low = x.masked_fill(~kept, float("inf")).amin((2, 3), keepdim=True)
    high = x.masked_fill(~kept, -float("inf")).amax((2, 3), keepdim=True)
    assert ((out >= low - 1e-6) & (out <= high + 1e-6)).all()


def test_constant_and_interior_ramp_are_reproduced() -> None:
    constant = torch.full((2, 3, 12, 12), 0.3)
    removed = random_masks(2, 12, 12, 0.8, seed=4)  # touches the border too
    torch.testing.assert_close(noisy_linear_imputation(constant, removed, noise=0.0), constant, rtol=0, atol=1e-6)

    # The stencil is symmetric, so a linear function is its own neighbour mean away from the border.
    ramp = torch.arange(9, dtype=torch.float64).expand(1, 2, 7, 9).clone()
    interior = torch.zeros(1, 7, 9, dtype=torch.bool)
    interior[:, 1:-1, 1:-1] = random_masks(1, 5, 7, 0.6, seed=5)
    out = noisy_linear_imputation(ramp, interior, noise=0.0)
    torch.testing.assert_close(out, ramp, rtol=0, atol=1e-9)

    # At the border the missing neighbours' weights are dropped, so the ramp is not reproduced:
    # pixel (3, 0) becomes (1/6 * 1 + 2/12 * 1 + 2/6 * 0) / (3/6 + 2/12) = 0.5, not 0.
    edge = torch.zeros(1, 7, 9, dtype=torch.bool)
    edge[0, 3, 0] = True
    out = noisy_linear_imputation(ramp, edge, noise=0.0)
    torch.testing.assert_close(out[0, :, 3, 0], torch.full((2,), 0.5, dtype=torch.float64))


def test_noise_on_removed_pixels_only_and_seeded() -> None:
    x = torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    removed = random_masks(8, 12, 12, 0.5, seed=7)
    clean = noisy_linear_imputation(x, removed, noise=0.0)
    noisy = noisy_linear_imputation(x, removed, noise=0.01, generator=torch.Generator().manual_seed(8))
    again = noisy_linear_imputation(x, removed, noise=0.01, generator=torch.Generator().manual_seed(8))
    diff = noisy - clean
    mask = removed[:, None].expand_as(x)
    assert torch.equal(noisy, again)
    assert torch.equal(diff[~mask], torch.zeros_like(diff[~mask]))
    assert abs(diff[mask].std().item() - 0.01) < 1e-3  # 1728 draws: standard error ~1.7e-4
    assert abs(diff[mask].mean().item()) < 1e-3


def test_rows_with_nothing_removed_are_unchanged() -> None:
    x = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(9))
    removed = torch.zeros(2, 9, 7, dtype=torch.bool)
    removed[1, 4, 3] = True
    out = noisy_linear_imputation(x, removed)
    assert torch.equal(out[0], x[0])


def test_all_removed_raises() -> None:
    removed = torch.zeros(2, 9, 7, dtype=torch.bool)
    removed[1] = True
    with pytest.raises(UserError, match="every pixel removed"):
        noisy_linear_imputation(torch.rand(2, 3, 9, 7), removed)
