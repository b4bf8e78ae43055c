"""Benchmark: this engine against pytorch-grad-cam on the same three Grad-CAM maps, and a plain forward.

For each model (torchvision ResNet-50 with random weights, and ``vggface2_resnet50`` when it is
registered), on one batch: (a) the engine's three Grad-CAM maps (y*, y^c, softmax score) from one
forward and one batched backward; (b) pytorch-grad-cam's ``GradCAM`` called three times with the
same targets; (c) the same with the model's weights frozen and the input requiring a gradient
(``pgc_frozen``): pytorch-grad-cam's backward otherwise also computes every weight's gradient,
which the engine's ``torch.autograd.grad`` to the layer never does, so (c) is the fairer
comparison of the two methods; (d) a ``torch.no_grad()`` forward. Reports median times, the
speed ratios and the largest absolute difference between the two libraries' min-max normalised
maps at input size.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.attribution import create_attribution, normalise, upsample
from scout_exp.attribution.base import feature_reshape_for
from scout_exp.heads.softmax import softmax_score


def _median_times(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and process-CPU time of each function over ``repeats`` interleaved rounds.

    One warm-up round first. Interleaving (a, b, c, a, b, c, ...) spreads load changes on a
    shared machine over all functions; CPU time is less sensitive to other processes than wall time.
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_ > 0:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {name: {"wall": statistics.median(wall[name]), "cpu": statistics.median(cpu[name])} for name in fns}


class _SoftmaxScoreTarget:
    """pytorch-grad-cam target: the softmax score (Eq. 11) of one sample's logits."""

    def __call__(self, sample_logits: Tensor) -> Tensor:
        return torch.softmax(sample_logits, dim=-1).max()


def bench_model(model: nn.Module, x: Tensor, repeats: int, layer: str | None = None) -> dict[str, Any]:
    """Time engine, pytorch-grad-cam and a plain forward on ``x``; compare their normalised maps.

    ``layer``: the target layer (None: the last ``nn.Conv2d``); a token layer goes through the
    model's declared ``feature_reshape`` in both libraries (pytorch-grad-cam's ``reshape_transform``).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    with torch.no_grad():
        top2 = model(x).topk(2, dim=1).indices
    y_star, y_counter = top2[:, 0], top2[:, 1]

    def targets(logits: Tensor) -> Tensor:
        rows = torch.arange(logits.shape[0], device=logits.device)
        return torch.stack([logits[rows, y_star], logits[rows, y_counter], softmax_score(logits)], dim=1)

    engine = create_attribution("gradcam", model, layer)
    pgc_cam = GradCAM(model, [engine.layer], reshape_transform=feature_reshape_for(model, engine.layer_name))
    pgc_targets = [
        [ClassifierOutputTarget(int(c)) for c in y_star],
        [ClassifierOutputTarget(int(c)) for c in y_counter],
        [_SoftmaxScoreTarget() for _ in range(x.shape[0])],
    ]
    results: dict[str, Any] = {}

    def run_engine() -> None:
        results["engine"] = engine(x, targets)

    def run_pgc() -> None:
        results["pgc"] = [pgc_cam(input_tensor=x, targets=t) for t in pgc_targets]

    trainable = [p for p in model.parameters() if p.requires_grad]
    x_grad = x.detach().clone().requires_grad_(True)  # the layer's activations need a gradient path

    def run_pgc_frozen() -> None:
        for p in trainable:
            p.requires_grad_(False)
        try:
            results["pgc_frozen"] = [pgc_cam(input_tensor=x_grad, targets=t) for t in pgc_targets]
        finally:
            for p in trainable:
                p.requires_grad_(True)

    def run_forward() -> None:
        with torch.no_grad():
            model(x)

    runs = {"forward": run_forward, "engine": run_engine, "pgc": run_pgc, "pgc_frozen": run_pgc_frozen}
    times = _median_times(runs, repeats)
    pgc_cam.activations_and_grads.release()
    model.zero_grad(set_to_none=True)

    # pytorch-grad-cam's order: min-max at the layer, resize to the input, min-max again.
    ours = normalise(upsample(normalise(results["engine"]), (x.shape[-2], x.shape[-1]))).cpu()
    theirs = torch.stack([torch.from_numpy(m) for m in results["pgc"]], dim=1)
    frozen = torch.stack([torch.from_numpy(m) for m in results["pgc_frozen"]], dim=1)
    out: dict[str, Any] = {"layer": engine.layer_name, "pgc_frozen_max_abs_diff": float((frozen - theirs).abs().max())}
    for clock in ("wall", "cpu"):
        t_forward, t_engine, t_pgc, t_frozen = (times[k][clock] for k in ("forward", "engine", "pgc", "pgc_frozen"))
        out.update(
            {
                f"engine_{clock}_s": t_engine,
                f"pgc_{clock}_s": t_pgc,
                f"pgc_frozen_{clock}_s": t_frozen,
                f"forward_{clock}_s": t_forward,
                f"pgc_over_engine_{clock}": t_pgc / t_engine,
                f"pgc_frozen_over_engine_{clock}": t_frozen / t_engine,
                f"engine_over_forward_{clock}": t_engine / t_forward,
            }
        )
    out["max_abs_diff_normalised"] = float((ours - theirs).abs().max())
    return out


#: face embedders benchmarked at their own 112 px input (targets: their two largest outputs and the softmax of them)
FACE_MODELS = ("iresnet50", "face_vit_t")


def main(batch: int = 8, size: int = 224, repeats: int = 3, device: str | None = None, seed: int = 0) -> dict:
    """Run the benchmark on ResNet-50, vggface2_resnet50 (``size`` px) and the :data:`FACE_MODELS` (112 px).

    ``device``: a torch device; by default the GPU when CUDA is available, else the CPU.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    from torchvision.models import resnet50

    from scout_exp.models import registry

    torch.manual_seed(seed)
    x = torch.randn(batch, 3, size, size, device=device)
    models: dict[str, Any] = {"resnet50": resnet50(weights=None)}
    if "vggface2_resnet50" in registry.list_models():
        models["vggface2_resnet50"] = registry.create_model("vggface2_resnet50", num_classes=8631)
    else:
        models["vggface2_resnet50"] = None
    out: dict[str, Any] = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "batch": batch,
        "size": size,
        "repeats": repeats,
        "models": {},
    }
    x112 = torch.randn(batch, 3, 112, 112, device=device)
    for name, model in models.items():
        if model is None:
            out["models"][name] = {"skipped": "not registered in scout_exp.models yet"}
            continue
        res = bench_model(model.to(device), x, repeats)
        out["models"][name] = _accept(res)
    for name in FACE_MODELS:
        res = bench_model(
            registry.create_model(name, 512).to(device), x112, repeats, registry.model_info(name).target_layer
        )
        res["size"] = 112
        out["models"][name] = _accept(res)
    return out


def _accept(res: dict[str, Any]) -> dict[str, Any]:
    res["accept"] = {
        "engine_5x_faster_than_pgc": res["pgc_over_engine_wall"] >= 5,
        "engine_within_1.5x_forward": res["engine_over_forward_wall"] <= 1.5,
        "maps_agree_1e-4": res["max_abs_diff_normalised"] <= 1e-4,
    }
    return res


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
