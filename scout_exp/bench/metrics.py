"""Benchmark: pairs/s of each explanation metric beside the explanations themselves, and speed-ups.

On FaceParts look-alike pairs (default data settings, 112 px) with a resnet18 of random weights
(the cost does not depend on the weights), SCOUT maps (gradient x activation, ``a_abar_as``) at
layer4 are timed, then :func:`scout_exp.metrics.score_batch` with each metric alone. Two
speed-ups on the same inputs: the one-sort PR curve against the per-fraction protocol
(:func:`scout_exp.explain.evaluation.pr_curve`, 100 resizes and sorts per image), the batched
deletion curve against ``quantus.PixelFlipping`` (same number of model calls per image).

``<metric>_forwards_per_image`` counts the images the model sees per explained image (a backward
pass not included): the floor of a metric's cost, against about one forward for the explanation
itself (``explain_forwards_per_image``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, cast

import numpy as np
import torch
import torchvision

from scout_exp.data.faceparts import FACE_PARTS, FaceParts
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.explain.evaluation import pr_curve
from scout_exp.explain.pairs import Pair, split_pairs
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.metrics import BatchContext, build_metrics, margin_fn, metric_names, perturbation_curves, score_batch
from scout_exp.metrics.options import PartOptions
from scout_exp.metrics.parts import pr_curves
from scout_exp.metrics.truth import part_truth


def _ids(pair: Pair) -> tuple[int, int, int, int]:
    """(image 1, image 2, class 1, class 2) of a pair of data set images; ValueError when one is missing."""
    if pair.image_2 is None or pair.class_1 is None or pair.class_2 is None:
        raise ValueError(f"pair {pair.name!r} lacks its second image or a class")
    return int(pair.image_1), int(pair.image_2), pair.class_1, pair.class_2


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


class _Counter:
    """Counts the images a model's forward passes see (a forward pre-hook)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.images = 0
        model.register_forward_pre_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self.images += len(args[0])


def main(pairs: int = 8, size: int = 112) -> dict[str, Any]:
    torch.manual_seed(0)
    torch.set_grad_enabled(True)
    fp = FaceParts(num_identities=20, images_per_identity=250)
    chosen = [_ids(p) for p in split_pairs(fp, list(range(0, 400)), pairs)]
    preprocess = Preprocess(InputSpec(size=size))
    x = torch.stack([preprocess(fp.render(i).image) for i1, i2, _, _ in chosen for i in (i1, i2)])
    ya = torch.tensor([c for _, _, c1, c2 in chosen for c in (c1, c2)])
    yb = torch.tensor([c for _, _, c1, c2 in chosen for c in (c2, c1)])
    model = torchvision.models.resnet18(num_classes=20).eval()
    explainer = ScoutExplainer(
        model, attribution="gradxact", target_layer="layer4", head="softmax", variant="a_abar_as"
    )
    explainer.explain(x[:2], ya[:2], yb[:2])  # warm-up
    counter = _Counter(model)
    e, t_explain = _timed(lambda: explainer.explain(x, ya, yb))
    explain_forwards = counter.images
    truths = [
        part_truth(fp, i, c, (size, size), preprocess, interventions=True)
        for i1, i2, c1, c2 in chosen
        for i, c in ((i1, c2), (i2, c1))
    ]
    kw = dict(
        images=x,
        maps=e.discriminant,
        part_names=FACE_PARTS,
        score_fn=margin_fn(model, ya, yb),
        part_maps=torch.stack([t.part_map for t in truths]),
        discriminative=torch.stack([t.discriminative for t in truths]),
        switched=[t.switched for t in truths],
        model=model,
        explain_fn=lambda z: explainer.explain(z, ya, yb).discriminant,
    )
    result: dict[str, Any] = {
        "pairs": pairs,
        "images": len(x),
        "threads": torch.get_num_threads(),
        "explain_pairs_per_s": round(pairs / t_explain, 2),
        "explain_forwards_per_image": round(explain_forwards / len(x), 2),
    }
    metrics = metric_names()
    for metric in metrics:
        counter.images = 0
        _, t = _timed(lambda m=metric: score_batch(build_metrics([m], {}), BatchContext(**kw)))
        result[f"{metric}_pairs_per_s"] = round(pairs / t, 2)
        result[f"{metric}_time_over_explain"] = round(t / t_explain, 2)
        result[f"{metric}_forwards_per_image"] = round(counter.images / len(x), 2)
    result["all_metrics_time_over_explain"] = round(sum(result[f"{m}_time_over_explain"] for m in metrics), 2)

    # PR curve: one sort against 100 resize + sort + part counts per image
    _, t_new = _timed(lambda: pr_curves(kw["maps"], kw["part_maps"], kw["discriminative"], PartOptions().fractions))
    _, t_old = _timed(
        lambda: [
            pr_curve(
                kw["maps"][i],
                kw["part_maps"][i],
                FACE_PARTS,
                [n for n, d in zip(FACE_PARTS, kw["discriminative"][i]) if d],
            )
            for i in range(len(x))
        ]
    )
    result["pr_curve_speedup_over_per_fraction"] = round(t_old / t_new, 1)

    # deletion: batched torch against quantus.PixelFlipping, same number of model calls per image
    import quantus

    step = 4 * size  # quantus' features are C*H*W values and its step must divide H*W
    steps = 3 * size * size // step
    xs, ys, ms = x[:4], ya[:4], e.discriminant[:4]
    logit_model = torch.nn.Sequential(model).eval()  # quantus refuses a model in training mode

    def ours() -> Any:
        return perturbation_curves(
            lambda z, i: model(z).gather(1, ys[i][:, None])[:, 0], xs, ms, mode="deletion", baseline="zero", steps=steps
        )

    def theirs() -> Any:
        # quantus annotates perturb_baseline as str, but takes a number as the fill value too
        metric = quantus.PixelFlipping(
            features_in_step=step, perturb_baseline=cast(str, 0.0), normalise=False, disable_warnings=True
        )
        maps = torch.nn.functional.interpolate(ms[:, None], size=(size, size), mode="bilinear").expand(-1, 3, -1, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return metric(
                model=logit_model,
                x_batch=xs.numpy(),
                y_batch=ys.numpy(),
                a_batch=maps.detach().numpy().copy(),
                softmax=False,
                device="cpu",
                batch_size=len(xs),
            )

    with torch.no_grad():
        _, t_ours = _timed(ours)
        _, t_q = _timed(theirs)
    result["deletion_speedup_over_quantus"] = round(t_q / t_ours, 2)
    result["deletion_ours_s"] = round(t_ours, 2)

    return {k: (float(v) if isinstance(v, np.floating) else v) for k, v in result.items()}
