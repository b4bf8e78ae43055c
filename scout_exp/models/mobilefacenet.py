"""MobileFaceNet (Chen et al., CCBR 2018) in insightface ``arcface_torch``'s ``mbf`` layout (docs/models.md).

``layers`` (a ModuleList): a 3x3/2 conv block of 128 channels, a grouped 3x3 conv block (64
groups), then depth-wise stages ``DepthWise`` (1x1 expand to ``groups`` channels, depth-wise 3x3,
1x1 linear projection) alternating with ``Residual`` stacks of the same unit plus identity, of
(4, 6, 2) units at 128/256/256 channels (``scale=2``); ``conv_sep`` (1x1 to 512), and the
``features`` head: a 7x7 depth-wise linear conv (GDC), flatten, ``Linear(512, embedding, bias=False)``,
BatchNorm1d. Each conv block is ``Conv2d(bias=False), BN, PReLU``; a linear block drops the PReLU.
Input: 112x112 RGB (ArcFace template), ``(x / 255 - 0.5) / 0.5``; ``conv_sep`` gives a 7x7 map.
"""

from __future__ import annotations

from collections.abc import Collection

from torch import Tensor, nn

from scout_exp.models.iresnet import ARCFACE_INPUT
from scout_exp.models.registry import register_model
from scout_exp.models.state_dicts import load_exact, read_state_dict, register_layout


def _conv(in_c: int, out_c: int, kernel: int, stride: int, padding: int, groups: int, act: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
    ]
    if act:
        layers.append(nn.PReLU(out_c))
    return nn.Sequential(*layers)


class ConvBlock(nn.Module):
    """Conv2d (no bias), BatchNorm2d and, unless ``linear``, PReLU: keys ``layers.{0,1,2}``."""

    def __init__(
        self,
        in_c: int,
        out_c: int,
        kernel: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.layers = _conv(in_c, out_c, kernel, stride, padding, groups, act=not linear)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """1x1 expansion to ``groups`` channels, depth-wise 3x3 (``stride``), linear 1x1 to ``out_c``; + x if ``residual``."""

    def __init__(self, in_c: int, out_c: int, groups: int, stride: int = 2, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_c, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            ConvBlock(groups, out_c, linear=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    """``units`` residual :class:`DepthWise` units at ``channels`` (stride 1)."""

    def __init__(self, channels: int, units: int, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, groups, 1, residual=True) for _ in range(units)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depth-wise convolution head: 7x7 depth-wise linear conv, flatten, Linear (no bias), BatchNorm1d."""

    def __init__(self, embedding: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(512, 512, 7, 1, 0, groups=512, linear=True),
            nn.Flatten(),
            nn.Linear(512, embedding, bias=False),
            nn.BatchNorm1d(embedding),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """arcface_torch ``mbf`` (``blocks=(1, 4, 6, 2)``, ``scale=2``): (B, 3, 112, 112) -> (B, embedding)."""

    def __init__(self, embedding: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), scale: int = 2) -> None:
        super().__init__()
        c64, c128 = 64 * scale, 128 * scale
        first: nn.Module = (
            ConvBlock(c64, c64, 3, 1, 1, groups=64) if blocks[0] == 1 else Residual(c64, blocks[0], groups=128)
        )
        self.layers = nn.ModuleList(
            [
                ConvBlock(3, c64, 3, 2, 1),
                first,
                DepthWise(c64, c64, groups=128),
                Residual(c64, blocks[1], groups=128),
                DepthWise(c64, c128, groups=256),
                Residual(c128, blocks[2], groups=256),
                DepthWise(c128, c128, groups=512),
                Residual(c128, blocks[3], groups=256),
            ]
        )
        self.conv_sep = ConvBlock(c128, 512)
        self.features = GDC(embedding)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


@register_layout
def describe_mobilefacenet(keys: Collection[str]) -> str | None:
    """``"a MobileFaceNet (model=mobilefacenet)"`` for arcface_torch ``mbf`` keys; None otherwise."""
    if "conv_sep.layers.0.weight" in keys and "features.layers.2.weight" in keys:
        return "a MobileFaceNet (model=mobilefacenet)"
    return None


@register_model(input_spec=ARCFACE_INPUT, target_layer="conv_sep", classifier="features.layers.2")
def mobilefacenet(num_classes: int = 512, weights: str | None = None) -> nn.Module:
    """MobileFaceNet, ``num_classes``-d embeddings; ``weights``: an arcface_torch ``mbf`` ``backbone.pth``.

    Raises UserError naming the mismatching keys when the file is another network.
    """
    model = MobileFaceNet(embedding=num_classes)
    if weights is not None:
        load_exact(model, read_state_dict(weights), weights, "mobilefacenet")
    return model
