"""Model-parameter randomisation sanity check (Adebayo et al., NeurIPS 2018), cascading from the top.

The model's blocks (top-level children with parameters, output side first) are re-initialised
one after another with their own ``reset_parameters`` (as quantus' MPRT does for torch models),
cumulatively, and the maps recomputed after each; each is compared with the original map by
Spearman rank correlation per image (of the values and of their absolute values; 0 where the randomised map became constant while the
original was not). A method that
depends on the model gives correlations that fall; one that does not is an edge detector. The
weights are restored afterwards (the model is randomised in place to keep every hook and wrapper
that ``explain_fn`` holds on it). The generator is re-seeded before each block, as in quantus'
``MPRT`` (``layer_order="top_down"``), with which ``tests/test_metrics_quantus.py`` checks
agreement where the blocks are its layers; quantus re-initialises every layer separately,
here the output-side blocks of a network (7 for a ResNet instead of 41 layers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from scout_exp.errors import UserError


@runtime_checkable
class _Resettable(Protocol):
    """A layer that re-initialises its own parameters (``nn.Linear``, ``nn.Conv2d``, ...)."""

    def reset_parameters(self) -> None: ...


@runtime_checkable
class _HasRunningStats(Protocol):
    """A normalisation layer with running statistics (``nn.BatchNorm2d``, ...)."""

    def reset_running_stats(self) -> None: ...


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Randomisation units, output side first: the first level of modules with >= 2 parametrised children."""
    node, prefix = model, ""
    while True:
        kids = [(n, m) for n, m in node.named_children() if any(True for _ in m.parameters())]
        if len(kids) != 1:
            break
        prefix, node = f"{prefix}{kids[0][0]}.", kids[0][1]
    if not kids:
        raise UserError("model-parameter randomisation needs a model with parametrised layers")
    return [(prefix + n, m) for n, m in reversed(kids)]


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """(B,) Spearman correlation of each row pair of (B, ...) tensors (average ranks; NaN when constant)."""
    ra = rankdata(a.reshape(len(a), -1).double().cpu().numpy(), axis=1)
    rb = rankdata(b.reshape(len(b), -1).double().cpu().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (ra * rb).sum(1) / den, np.nan)
    return torch.from_numpy(rho)


def _vs_original(original: Tensor, maps: Tensor) -> Tensor:
    """Spearman per image; a randomised map that became constant keeps none of the ranking: 0."""
    rho = spearman_rows(original, maps)
    flat = maps.reshape(len(maps), -1)
    constant = (flat == flat[:, :1]).all(1).cpu()
    varied = ~(original.reshape(len(original), -1) == original.reshape(len(original), -1)[:, :1]).all(1).cpu()
    return torch.where(constant & varied, torch.zeros_like(rho), rho)


def cascading_randomisation(
    model: nn.Module,
    explain_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    seed: int = 0,
    units: Sequence[str] | None = None,
) -> tuple[list[str], Tensor, Tensor]:
    """(block names, rho (B, L), rho of absolute values (B, L)) after randomising blocks 1..l, top first.

    ``explain_fn`` maps (B, C, H, W) images to (B, h, w) maps using ``model``. ``units`` restricts
    the blocks (names from :func:`blocks`); the weights are restored on exit, errors included.
    """
    found = blocks(model)
    if units is not None:
        unknown = set(units) - {n for n, _ in found}
        if unknown:
            raise UserError(f"unknown randomisation blocks {sorted(unknown)}; choose from {[n for n, _ in found]}")
        found = [(n, m) for n, m in found if n in set(units)]
    original = explain_fn(x).detach()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    names, rho, rho_abs = [], [], []
    fork_devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            for name, module in found:
                torch.manual_seed(seed)  # re-seeded for every block, as quantus' MPRT does (with seed + 1)
                for sub in module.modules():
                    if isinstance(sub, _Resettable):
                        sub.reset_parameters()
                    if isinstance(sub, _HasRunningStats):
                        sub.reset_running_stats()
                maps = explain_fn(x).detach()
                names.append(name)
                rho.append(_vs_original(original, maps))
                rho_abs.append(_vs_original(original.abs(), maps.abs()))
    finally:
        model.load_state_dict(state)
    return names, torch.stack(rho, 1), torch.stack(rho_abs, 1)
