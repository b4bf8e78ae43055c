"""AdaFace IR backbones in their published layout (Kim, Jain, Liu, CVPR 2022; docs/models.md).

AdaFace's ``net.py`` builds IR networks differently from insightface's IResNet (same depths,
other key names): ``input_layer`` (3x3 conv, BN, PReLU), a flat ``body`` of units
``res_layer = BN, 3x3 conv, BN, PReLU, 3x3 conv (stride), BN`` with a ``shortcut_layer`` that is a
parameter-free ``MaxPool2d(1, stride)`` where the width stays and a 1x1 conv + BN where it
grows, then ``output_layer = BN2d, Dropout, Flatten, Linear(512*7*7, 512), BatchNorm1d(affine=False)``.
Its forward returns ``(x / ||x||, ||x||)``; here the un-normalised ``x`` (its norm is AdaFace's
quality estimate; cosine scores are the same). The published checkpoints are Lightning ``.ckpt``
files whose backbone keys start with ``model.`` (the margin head's ``head.kernel`` is dropped).
Input: 112x112 aligned with the ArcFace template, **BGR**, ``(x / 255 - 0.5) / 0.5``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from torch import Tensor, nn

from scout_exp.data.transforms import InputSpec
from scout_exp.models.registry import register_model
from scout_exp.models.state_dicts import load_exact, read_state_dict, register_layout

ADAFACE_INPUT = InputSpec(size=112, channel_order="BGR", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), pixel_scale=1.0)
#: units per stage (widths 64, 128, 256, 512) of AdaFace's ``get_blocks``; IR-101 is ``num_layers=100``
ADAFACE_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    101: (3, 13, 30, 3),
}
ADAFACE_PREFIXES = ("model.",)


class BasicBlockIR(nn.Module):
    """AdaFace's IR unit: ``res_layer(x) + shortcut_layer(x)``."""

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.BatchNorm2d(depth),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceIR(nn.Module):
    """AdaFace IR embedder: (B, 3, 112, 112) BGR -> (B, embedding) un-normalised embeddings."""

    def __init__(self, units: tuple[int, int, int, int], embedding: int = 512) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        body: list[nn.Module] = []
        in_channel = 64
        for width, count in zip((64, 128, 256, 512), units, strict=True):
            body += [BasicBlockIR(in_channel, width, 2)] + [BasicBlockIR(width, width, 1) for _ in range(count - 1)]
            in_channel = width
        self.body = nn.Sequential(*body)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, embedding),
            nn.BatchNorm1d(embedding, affine=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


@register_layout
def describe_adaface(keys: Collection[str]) -> str | None:
    """``"an AdaFace IR-101 (model=adaface_ir101)"`` for AdaFace keys; None for other layouts."""
    if "input_layer.0.weight" not in keys or "output_layer.3.weight" not in keys:
        return None
    units = sum(1 for k in keys if k.startswith("body.") and k.endswith(".res_layer.0.weight"))
    depth = next((d for d, c in ADAFACE_DEPTHS.items() if sum(c) == units), None)
    if depth is None:
        return f"an AdaFace IR network of {units} units, not a published depth"
    return f"an AdaFace IR-{depth} (model=adaface_ir{depth})"


def _factory(depth: int) -> Callable[..., nn.Module]:
    def adaface(num_classes: int = 512, weights: str | None = None) -> nn.Module:
        model = AdaFaceIR(ADAFACE_DEPTHS[depth], embedding=num_classes)
        if weights is not None:
            load_exact(model, read_state_dict(weights, ADAFACE_PREFIXES), weights, f"adaface_ir{depth}")
        return model

    adaface.__doc__ = (
        f"AdaFace IR-{depth}, ``num_classes``-d embeddings; ``weights``: its published ``.ckpt`` (keys "
        "``model.*``) or a bare state dict (UserError naming the mismatching keys when it does not fit)."
    )
    return adaface


for _depth, _units in ADAFACE_DEPTHS.items():
    _last = f"body.{sum(_units) - 1}"
    register_model(
        name=f"adaface_ir{_depth}", input_spec=ADAFACE_INPUT, target_layer=_last, classifier="output_layer.3"
    )(_factory(_depth))
