"""Shared helpers of the reliability tests: a tiny checkpoint and face images written in seconds."""

from __future__ import annotations

from pathlib import Path

import lightning
import torch

from scout_exp.checkpoint import OBJECTIVE_KEY
from scout_exp.data.faceparts import FaceParts
from scout_exp.io import save_image
from scout_exp.training.module import ClassifierModule

INPUT_32 = {"size": 32, "channel_order": "RGB", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "pixel_scale": 1.0}


def tiny_checkpoint(path: Path, model_name: str = "resnet18", num_classes: int = 4) -> Path:
    """A checkpoint in train.py's format (hyper-parameters + state dict) of an untrained network."""
    torch.manual_seed(0)
    module = ClassifierModule(model_name, num_classes, target_layer="layer4", input_spec=INPUT_32)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"name": "ce", "target": "scout_exp.training.module.ClassifierModule"}
    checkpoint = {
        "hyper_parameters": dict(module.hparams),
        "state_dict": module.state_dict(),
        "pytorch-lightning_version": lightning.__version__,
        OBJECTIVE_KEY: record,
    }
    torch.save(checkpoint, path)
    return path


def face_images(folder: Path, n: int = 2) -> list[Path]:
    """``n`` FaceParts renders saved as PNG files."""
    fp = FaceParts(num_identities=4, images_per_identity=12, image_size=64)
    return [save_image(fp.render(i * 12).image, folder / f"face{i}.png") for i in range(n)]
