"""Small face-model files in the published formats, written by the tests (no downloads)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with random weights and BatchNorm statistics (so a wrong layout shows)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=gen) * 0.2 + 0.9 if "running_var" in name else None
                tensor.copy_(values if values is not None else torch.randn(tensor.shape, generator=gen) * 0.05)
    return model.eval()


def write_state_dict(model: nn.Module, path: Path) -> Path:
    """A bare state dict, as arcface_torch saves ``backbone.pth``."""
    torch.save(model.state_dict(), path)
    return path


def write_magface_checkpoint(model: nn.Module, path: Path) -> Path:
    """MagFace's training checkpoint: the backbone under ``state_dict`` with ``features.module.`` keys."""
    state = {f"features.module.{k}": v for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.randn(10, 512)  # the MagFace head, not part of the backbone
    torch.save({"epoch": 25, "arch": "iresnet18", "state_dict": state}, path)
    return path


def write_adaface_checkpoint(model: nn.Module, path: Path) -> Path:
    """AdaFace's Lightning checkpoint: ``model.`` backbone keys, the margin head's ``head.kernel``, hparams."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["head.kernel"] = torch.randn(512, 10)
    hparams = argparse.Namespace(arch="ir_18", head="adaface", m=0.4, h=0.333)
    torch.save({"epoch": 1, "global_step": 10, "state_dict": state, "hyper_parameters": hparams}, path)
    return path


def write_onnx(model: nn.Module, path: Path, side: int = 112) -> Path:
    """``model`` exported to ONNX (opset 13, dynamic batch), as insightface's recognition packs are."""
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, 3, side, side),),
        str(path),
        dynamo=False,
        input_names=["input.1"],
        output_names=["embedding"],
        dynamic_axes={"input.1": {0: "batch"}},
        opset_version=13,
    )
    return path
