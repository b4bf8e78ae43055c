"""CASIA-Net and its interpretable variant (Yin et al., ICCV 2019; docs/method.md section 4).

Both models take 96x96 RGB faces with pixels in [-1, 1] (:data:`CASIANET_INPUT`) and share the
stage names ``stage0`` .. ``stage4``, so a base checkpoint loads into the interpretable model with
``load_state_dict(..., strict=False)`` (only the new head is left at its initial values).

Attribution layers: for ``casianet`` the default is ``stage4`` (its output is the BatchNorm of the
last 3x3 conv, 320x6x6, the map that is average-pooled into the feature); for
``casianet_interp`` it is ``peak_mask`` (the peak-masked map ``M``, 320x24x24, the map that is
average-pooled into the feature). Both are registered with the factories (``model_info(name).target_layer``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scout_exp.data.transforms import InputSpec
from scout_exp.models.registry import register_model

CASIANET_INPUT = InputSpec(size=96, channel_order="RGB", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), pixel_scale=1.0)
"""Pixels in [-1, 1]: ``x / 127.5 - 1`` as in the reference code."""

# (out_channels, stride) of each 3x3 conv, stage by stage (docs/method.md section 4).
_STAGES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((32, 1), (64, 1)),
    ((64, 2), (64, 1), (128, 1)),
    ((128, 2), (96, 1), (192, 1)),
    ((192, 2), (128, 1), (256, 1)),
    ((256, 2), (160, 1), (320, 1)),
)


class ConvBNAct(nn.Module):
    """Conv (``k`` x ``k``, 'same' padding) + BatchNorm + optional ELU.

    The conv has no bias: the BatchNorm that follows absorbs it (the reference adds one anyway).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel: int = 3, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _CasiaStages(nn.Module):
    """The five stages of CASIA-Net (spatial 96, 48, 24, 12, 6); the last conv has BN without ELU."""

    # registered by name in __init__ (add_module)
    stage0: nn.Sequential
    stage1: nn.Sequential
    stage2: nn.Sequential
    stage3: nn.Sequential
    stage4: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        cin = 3
        for s, convs in enumerate(_STAGES):
            blocks = []
            for i, (cout, stride) in enumerate(convs):
                last = s == len(_STAGES) - 1 and i == len(convs) - 1
                blocks.append(ConvBNAct(cin, cout, stride=stride, act=not last))
                cin = cout
            self.add_module(f"stage{s}", nn.Sequential(*blocks))

    def stage_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs of stages 2, 3 and 4 (192x24x24, 256x12x12, 320x6x6 for a 96x96 input)."""
        x = self.stage1(self.stage0(x))
        s2 = self.stage2(x)
        s3 = self.stage3(s2)
        return s2, s3, self.stage4(s3)


class CasiaNet(_CasiaStages):
    """Base CASIA-Net: stages, global average pool (320-d), dropout, ``fc``."""

    def __init__(self, num_classes: int, dropout: float = 0.4) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(320, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 320-d pooled feature (before dropout)."""
        return self.stage_maps(x)[2].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x)))


class PeakMask(nn.Module):
    """Keep, per sample and filter, exactly the ``peaks`` responses of largest ``|M|`` (sign kept).

    A response survives iff it is among the first ``peaks`` entries of a *stable* descending sort
    of ``|M|`` over the flattened (row-major) h x w map: ties at the cut are broken in favour of
    the earlier position, so exactly ``peaks`` survive whatever the ties. (The reference code keeps
    ``|M| > t`` with ``t`` the ``peaks``-th largest value, i.e. ``peaks - 1`` responses when there
    are no ties; we keep ``peaks`` as docs/method.md section 4 and the paper describe.) The mask is
    constant, so gradients reach only the kept responses.
    """

    def __init__(self, peaks: int) -> None:
        super().__init__()
        if peaks < 1:
            raise ValueError(f"peaks must be >= 1, got {peaks}")
        self.peaks = peaks

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        b, c, h, w = m.shape
        flat = m.reshape(b, c, h * w)
        k = min(self.peaks, h * w)
        order = torch.sort(flat.detach().abs(), dim=-1, descending=True, stable=True).indices[..., :k]
        keep = torch.zeros_like(flat).scatter_(-1, order, 1.0)
        return (flat * keep).reshape(b, c, h, w)


class InterpOutput(NamedTuple):
    """Everything the interpretable losses need from one forward pass."""

    logits: torch.Tensor  # (B, num_classes), from the dropped-out feature
    feature: torch.Tensor  # (B, 320), 24x24 average of masked_map, before dropout
    masked_map: torch.Tensor  # (B, 320, 24, 24), M after peak masking
    raw_map: torch.Tensor  # (B, 320, 24, 24), M = BN(conv3x3(hypercolumn))


class CasiaNetInterp(_CasiaStages):
    """CASIA-Net with the interpretable hypercolumn head and peak masking (docs/method.md section 4)."""

    def __init__(self, num_classes: int, peaks: int = 24, dropout: float = 0.4) -> None:
        super().__init__()
        self.reduce3 = ConvBNAct(256, 192, kernel=1)
        self.reduce4 = ConvBNAct(320, 192, kernel=1)
        self.map_conv = nn.Conv2d(576, 320, 3, padding=1, bias=False)
        self.map_bn = nn.BatchNorm2d(320)
        self.peak_mask = PeakMask(peaks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(320, num_classes)

    @property
    def filter_weight(self) -> torch.Tensor:
        """Weight (320, 576, 3, 3) of the last conv, the argument of the filter-diversity loss."""
        return self.map_conv.weight

    def hypercolumn(self, x: torch.Tensor) -> torch.Tensor:
        """576-channel 24x24 hypercolumn: L2-normalised stage 2, and stages 3, 4 upsampled + 1x1 conv.

        Upsampling is bilinear with half-pixel centres (``align_corners=False``); the TF1 reference
        used the older corner-aligned-origin variant, which shifts maps by under one cell.
        """
        s2, s3, s4 = self.stage_maps(x)
        size = s2.shape[-2:]
        up3 = F.interpolate(s3, size=size, mode="bilinear", align_corners=False)
        up4 = F.interpolate(s4, size=size, mode="bilinear", align_corners=False)
        parts = (s2, self.reduce3(up3), self.reduce4(up4))
        return torch.cat([F.normalize(p, dim=1) for p in parts], dim=1)

    def forward_maps(self, x: torch.Tensor) -> InterpOutput:
        """Logits, pooled feature, masked and raw maps of one batch."""
        raw = self.map_bn(self.map_conv(self.hypercolumn(x)))
        masked = self.peak_mask(raw)
        feature = masked.mean(dim=(2, 3))
        return InterpOutput(self.classify(feature), feature, masked, raw)

    def classify(self, feature: torch.Tensor) -> torch.Tensor:
        """Dropout then ``fc``: logits of a (possibly FAD-masked) 320-d feature."""
        return self.fc(self.dropout(feature))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x).logits


@register_model(input_spec=CASIANET_INPUT, target_layer="stage4")
def casianet(num_classes: int, dropout: float = 0.4) -> nn.Module:
    """Base CASIA-Net (DR-GAN encoder) for 96x96 faces in [-1, 1]."""
    return CasiaNet(num_classes, dropout=dropout)


@register_model(input_spec=CASIANET_INPUT, target_layer="peak_mask")
def casianet_interp(num_classes: int, peaks: int = 24, dropout: float = 0.4) -> nn.Module:
    """Interpretable CASIA-Net (hypercolumn head, peak masking) for 96x96 faces in [-1, 1]."""
    return CasiaNetInterp(num_classes, peaks=peaks, dropout=dropout)
