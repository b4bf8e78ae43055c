"""The batched deletion curve agrees with quantus' PixelFlipping on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from scout_exp.metrics import perturbation_curves
from scout_exp.metrics.road import road_curves


class Margin(nn.Module):
    """A small conv net whose single output is the explained score (quantus reads column 0)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_deletion_matches_quantus_pixel_flipping() -> None:
    import quantus

    model = Margin().eval()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(1))  # distinct values: no ties
    steps, pixels_per_step = 16, 4  # 64 pixels
    metric = quantus.PixelFlipping(
        features_in_step=pixels_per_step,  # one channel: features are pixels
        perturb_baseline=0.0,
        normalise=False,
        abs=False,
        disable_warnings=True,
        return_auc_per_sample=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=np.zeros(4, dtype=np.int64),
            a_batch=maps[:, None].numpy().copy(),
            softmax=False,
            device="cpu",
        )
    curves, _ = perturbation_curves(
        lambda z, i: model(z)[:, 0], x, maps, mode="deletion", baseline="zero", steps=steps, batch_size=16
    )
    np.testing.assert_allclose(curves[:, 1:].numpy(), np.asarray(ref), rtol=1e-5, atol=1e-5)


class Classifier(nn.Module):
    """A small conv net with 3 classes (quantus' ROAD scores whether the prediction survives)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 100, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_road_matches_quantus() -> None:
    """Same removals (most relevant first), same noise-free imputation: the same share of kept predictions."""
    import quantus

    model = Classifier().eval()
    x = torch.rand(16, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    maps = torch.rand(16, 10, 10, generator=torch.Generator().manual_seed(1))  # no ties
    with torch.no_grad():
        y = model(x).argmax(1)
    percentages = [10, 30, 50, 70, 90]  # whole pixel counts of 100 pixels in both conventions
    metric = quantus.ROAD(percentages=percentages, noise=0.0, abs=False, normalise=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = metric(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps[:, None].numpy().copy(), device="cpu"
        )
    curves, _ = road_curves(
        lambda z, i: (model(z).argmax(1) == y[i]).float(),
        x,
        maps,
        fractions=tuple(p / 100 for p in percentages),
        noise=0.0,
    )
    np.testing.assert_allclose(curves.mean(0).numpy(), [ref[p] for p in percentages], atol=1e-6)
    assert 0 < curves.mean() < 1  # the removals change some predictions: the comparison is not vacuous
