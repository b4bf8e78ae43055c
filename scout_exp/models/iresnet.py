"""IResNet face embedders in insightface ``arcface_torch``'s layout (ArcFace, Deng et al., CVPR 2019).

The layout (docs/models.md) is what ``arcface_torch/backbones/iresnet.py`` builds, so its
``backbone.pth`` state dicts load strictly: a 3x3 stem (``conv1``, ``bn1``, ``prelu``) at full
resolution, four stages ``layer1``-``layer4`` of 64/128/256/512 channels, each starting with a
stride-2 block, blocks ``bn1 -> conv1 -> bn2 -> prelu -> conv2 (stride) -> bn3`` plus the shortcut
(``downsample``: 1x1 conv + BN where the shape changes); then ``bn2``, dropout, ``fc`` (512*7*7 ->
embedding) and a ``features`` BatchNorm1d. Input: 112x112 RGB aligned with the ArcFace five-point
template (``align=arcface112``), ``(x / 255 - 0.5) / 0.5``. Blocks per stage: r18 (2, 2, 2, 2),
r34 (3, 4, 6, 3), r50 (3, 4, 14, 3), r100 (3, 13, 30, 3), r200 (6, 26, 60, 6).

MagFace (Meng et al., CVPR 2021) publishes the same network inside its training checkpoint, keys
prefixed ``features.module.``; :func:`iresnet_state_dict` accepts both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

import torch
from torch import Tensor, nn

from scout_exp.data.transforms import InputSpec
from scout_exp.models.registry import register_model
from scout_exp.models.state_dicts import load_exact, read_state_dict, register_layout

#: ArcFace crops: 112x112 RGB, pixels mapped to [-1, 1]
ARCFACE_INPUT = InputSpec(size=112, channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), pixel_scale=1.0)
#: blocks per stage of each published depth
IRESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}
#: prefixes a published file may put before the backbone's keys (MagFace's checkpoint)
IRESNET_PREFIXES = ("features.module.",)
STAGE_WIDTHS = (64, 128, 256, 512)


class IBasicBlock(nn.Module):
    """Pre-activation residual block of IResNet: BN, 3x3 conv, BN, PReLU, 3x3 conv (stride), BN, + shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """IResNet embedder: (B, 3, 112, 112) -> (B, num_features) un-normalised embeddings."""

    def __init__(self, blocks: Sequence[int], num_features: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for index, (width, count) in enumerate(zip(STAGE_WIDTHS, blocks, strict=True), start=1):
            stage = [IBasicBlock(inplanes, width, stride=2)] + [IBasicBlock(width, width) for _ in range(count - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*stage))
            inplanes = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for index in range(1, 5):
            x = self.get_submodule(f"layer{index}")(x)
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def stage_counts(keys: Collection[str], pattern: str) -> tuple[int, ...]:
    """Blocks per stage in state-dict ``keys`` whose block keys match ``pattern`` (groups: stage, block)."""
    counts: dict[int, int] = {}
    for key in keys:
        match = re.match(pattern, key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            counts[stage] = max(counts.get(stage, 0), block + 1)
    return tuple(counts[s] for s in sorted(counts))


@register_layout
def describe_iresnet(keys: Collection[str]) -> str | None:
    """``"an IResNet-100 (model=iresnet100)"`` for arcface_torch IResNet keys; None for other layouts."""
    if "conv1.weight" not in keys or "layer1.0.bn1.weight" not in keys or "features.running_mean" not in keys:
        return None
    counts = stage_counts(keys, r"layer(\d)\.(\d+)\.bn1\.weight$")
    depth = next((d for d, c in IRESNET_DEPTHS.items() if c == counts), None)
    if depth is None:
        return f"an IResNet with blocks {counts}, not a published depth"
    return f"an IResNet-{depth} (model=iresnet{depth})"


def _factory(depth: int) -> Callable[..., nn.Module]:
    def iresnet(num_classes: int = 512, weights: str | None = None) -> nn.Module:
        model = IResNet(IRESNET_DEPTHS[depth], num_features=num_classes)
        if weights is not None:
            load_exact(model, read_state_dict(weights, IRESNET_PREFIXES), weights, f"iresnet{depth}")
        return model

    iresnet.__doc__ = (
        f"IResNet-{depth} (arcface_torch ``r{depth}``), ``num_classes``-d embeddings; ``weights``: its "
        "``backbone.pth`` or a MagFace checkpoint (UserError naming the mismatching keys when it does not fit)."
    )
    return iresnet


for _depth in IRESNET_DEPTHS:
    register_model(name=f"iresnet{_depth}", input_spec=ARCFACE_INPUT, target_layer="layer4")(_factory(_depth))
