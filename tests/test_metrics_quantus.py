"""The batched deletion curve agrees with quantus' PixelFlipping on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from scout_exp.metrics import perturbation_curves


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
