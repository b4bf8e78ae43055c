"""The VGGFace2 ResNet-50 (Caffe layout, 8,631 identities) whose public weights are ``resnet50_ft``/``_scratch``.

docs/method.md section 3: the stride 2 of each stage sits in the first 1x1 conv of its first
bottleneck (torchvision puts it in the 3x3), the stem max-pool is k3 s2 p0 with ``ceil_mode``,
the head is ``AvgPool2d(7)`` then ``fc`` 2048 -> 8631. Module names follow the converted pickles
(``conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.bias``, ...). Input: 224x224 BGR,
0-255, minus the BGR mean of :data:`VGGFACE2_INPUT`.
"""

from __future__ import annotations

import torch
from torch import nn

from scout_exp.data.transforms import InputSpec
from scout_exp.errors import UserError
from scout_exp.models.pickled_weights import load_into, load_pickled_weights
from scout_exp.models.registry import register_model

VGGFACE2_CLASSES = 8631
VGGFACE2_INPUT = InputSpec(
    size=224,
    channel_order="BGR",
    mean=(91.4953, 103.8827, 131.0912),
    std=(1.0, 1.0, 1.0),
    pixel_scale=255.0,
)
_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride)


class CaffeBottleneck(nn.Module):
    """1x1 (stride here) -> 3x3 -> 1x1 bottleneck with a projection shortcut where the shape changes.

    Written out rather than taken from torchvision, whose ``Bottleneck`` strides in the 3x3 conv.
    Additions and ReLUs are not in-place, so hooked activations stay intact for attribution maps.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class VGGFace2ResNet50(nn.Module):
    """Caffe-layout ResNet-50 mapping (B, 3, 224, 224) BGR mean-subtracted 0-255 images to identity logits."""

    # registered by name in __init__ (setattr)
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, num_classes: int = VGGFACE2_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        in_channels = 64
        for index, (width, blocks, stride) in enumerate(_STAGES, start=1):
            stage = [CaffeBottleneck(in_channels, width, stride)]
            in_channels = width * CaffeBottleneck.expansion
            stage += [CaffeBottleneck(in_channels, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
        self.avgpool = nn.AvgPool2d(kernel_size=7, stride=1)
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if x.shape[-2:] != (7, 7):
            raise UserError(
                f"vggface2_resnet50 needs 224x224 inputs (its head is a fixed 7x7 average pool), but its "
                f"last feature map is {x.shape[-2]}x{x.shape[-1]}; set the input size to 224"
            )
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


# target layer None: the last Conv2d (layer4.2.conv3), as the SCOUT-Face seed does (docs/method.md section 3)
@register_model(input_spec=VGGFACE2_INPUT, target_layer=None)
def vggface2_resnet50(num_classes: int = VGGFACE2_CLASSES, weights: str | None = None) -> nn.Module:
    """VGGFace2 ResNet-50; ``weights`` is the path of a ``resnet50_ft``/``resnet50_scratch`` pickle to load."""
    model = VGGFace2ResNet50(num_classes=num_classes)
    if weights is not None:
        hint = (
            f"vggface2_resnet50(num_classes={num_classes}) expects a pickle with {num_classes} classes "
            f"laid out like resnet50_ft/resnet50_scratch (the public files have {VGGFACE2_CLASSES})"
        )
        load_into(model, load_pickled_weights(weights), source=str(weights), hint=hint)
    return model
