"""Benchmark: the cost of verification maps per method, the black boxes and FGGB beside the gradient methods.

On one batch of (probe, reference) pairs through an embedder (torchvision ResNet-18 with a
128-d embedding layer, random weights), each method explains both images of every pair
against the other (similar and different evidence): the engine's methods in one batched
backward, the ``pgc:`` / ``captum:`` adapters running the third-party code, RISE and CorrRISE
with ``masks`` masked forwards per image, and FGGB with one input gradient per embedding
dimension (batched). Reports the median wall and CPU time per pair and the ratio to one plain
forward of the pair's two images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from scout_exp.bench.explain import _median_times
from scout_exp.explain.verification import VerificationExplainer

METHODS = (
    "gradxact",
    "gradcam",
    "gradcampp",
    "pgc:GradCAM",
    "captum:LayerGradientXActivation",
    "rise",
    "corrrise",
    "fggb",
)
#: methods that read no layer, and those of them that take ``masks``
AT_INPUT, MASKED = ("rise", "corrrise", "fggb"), ("rise", "corrrise")


def main(
    batch: int = 4, size: int = 112, repeats: int = 2, masks: int = 500, device: str = "cpu", seed: int = 0
) -> dict[str, Any]:
    """Time every method of :data:`METHODS` on ``batch`` pairs of ``size`` px images; a JSON-able dict."""
    from scout_exp.models import create_model

    torch.manual_seed(seed)
    embedder = create_model("resnet18", num_classes=128).to(device).eval()
    probe, reference = (torch.randn(batch, 3, size, size, device=device) for _ in range(2))
    explainers = {
        m: VerificationExplainer(
            embedder, None if m in AT_INPUT else "layer3", m, **({"masks": masks} if m in MASKED else {})
        )
        for m in METHODS
    }

    def forward() -> None:
        with torch.no_grad():
            embedder(torch.cat([probe, reference]))

    fns: dict[str, Callable[[], Any]] = {
        "forward": forward,
        **{m: partial(e.explain, probe, reference) for m, e in explainers.items()},
    }
    times = _median_times(fns, repeats)
    out: dict[str, Any] = {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "pairs": batch,
        "size": size,
        "rise_masks": masks,
        "repeats": repeats,
        "methods": {},
    }
    for m in METHODS:
        out["methods"][m] = {
            "wall_s_per_pair": times[m]["wall"] / batch,
            "cpu_s_per_pair": times[m]["cpu"] / batch,
            "over_forward_wall": times[m]["wall"] / times["forward"]["wall"],
        }
    out["forward_wall_s_per_pair"] = times["forward"]["wall"] / batch
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
