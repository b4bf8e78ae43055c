"""torchvision ResNets as face classifiers (random initialisation: no weights are downloaded)."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from scout_exp.data.transforms import InputSpec
from scout_exp.models.registry import register_model

RESNET_INPUT = InputSpec(size=112, channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), pixel_scale=1.0)
"""Face crops of 112x112, pixels in [-2, 2] (the models are trained from scratch on this spec)."""


@register_model(input_spec=RESNET_INPUT, target_layer="layer4")
def resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with an identity layer of ``num_classes``."""
    return tvm.resnet18(weights=None, num_classes=num_classes)


@register_model(input_spec=RESNET_INPUT, target_layer="layer4")
def resnet50(num_classes: int) -> nn.Module:
    """torchvision ResNet-50 with an identity layer of ``num_classes``."""
    return tvm.resnet50(weights=None, num_classes=num_classes)
