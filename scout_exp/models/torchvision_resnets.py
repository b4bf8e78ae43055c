"""torchvision ResNets as face classifiers (random initialisation: no weights are downloaded)."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from scout_exp.models.registry import register_model


@register_model
def resnet18(num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with an identity layer of ``num_classes``."""
    return tvm.resnet18(weights=None, num_classes=num_classes)


@register_model
def resnet50(num_classes: int) -> nn.Module:
    """torchvision ResNet-50 with an identity layer of ``num_classes``."""
    return tvm.resnet50(weights=None, num_classes=num_classes)
