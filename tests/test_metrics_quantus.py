"""The batched deletion curve agrees with quantus' PixelFlipping on the same inputs."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from scout_exp.metrics import perturbation_curves
from scout_exp.metrics.randomisation import cascading_randomisation
from scout_exp.metrics.road import road_curves


def tiny_net(side: int, outputs: int) -> nn.Module:
    """A seeded conv net on (N, 1, side, side) images (quantus reads column 0 as a single score)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * side * side, outputs)
    ).eval()


def test_deletion_matches_quantus_pixel_flipping() -> None:
    import quantus

    model = tiny_net(8, 1)
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


def test_road_matches_quantus() -> None:
    """Same removals (most relevant first), same noise-free imputation: the same share of kept predictions."""
    import quantus

    model = tiny_net(10, 3)  # quantus' ROAD scores whether the predicted class survives
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


def _input_x_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, H, W) gradient x input of the target logits, summed over channels."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, y[:, None]).sum(), x)
    return (grad * x).sum(1).detach()


def test_cascading_randomisation_matches_quantus_mprt() -> None:
    """Same blocks (top down), same re-initialisation: the same Spearman correlations per layer and image."""
    import quantus

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(256, 3),
    ).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    names, rho, rho_abs = cascading_randomisation(model, lambda z: _input_x_gradient(model, z, y), x, seed=43)
    assert names == ["5", "2", "0"]

    def explain(model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **_: object) -> np.ndarray:
        return _input_x_gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets))[:, None].numpy()

    original = explain(model, x.numpy(), y.numpy())
    for absolute, ours in ((False, rho), (True, rho_abs)):
        metric = quantus.MPRT(layer_order="top_down", seed=42, abs=absolute, normalise=False, disable_warnings=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = metric(
                model=model,
                x_batch=x.numpy(),
                y_batch=y.numpy(),
                a_batch=original.copy(),
                explain_func=explain,
                device="cpu",
            )
        expected = np.array([ref[name] for name in names]).T  # (images, layers)
        np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    assert (rho[:, -1] < 0.9).all()  # randomising everything changes the maps: the comparison is not vacuous
