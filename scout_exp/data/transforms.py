"""Model input preprocessing, declared per backbone in ``configs/model/*.yaml`` (``input:``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class InputSpec:
    """How a backbone wants its pixels.

    ``pixel_scale`` is the value of a white pixel before normalisation (1.0 or 255.0);
    ``mean`` and ``std`` are in those units and in the model's ``channel_order``.
    """

    size: int = 112
    channel_order: str = "RGB"
    mean: Sequence[float] = field(default=(0.5, 0.5, 0.5))
    std: Sequence[float] = field(default=(0.5, 0.5, 0.5))
    pixel_scale: float = 1.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> InputSpec:
        return cls(
            size=int(cfg["size"]),
            channel_order=str(cfg["channel_order"]).upper(),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
            pixel_scale=float(cfg["pixel_scale"]),
        )

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")


class Preprocess:
    """uint8 RGB image (H, W, 3) -> float tensor (3, size, size) as the backbone expects."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        scale = spec.pixel_scale / 255.0
        mean = np.asarray(spec.mean, dtype=np.float32)
        std = np.asarray(spec.std, dtype=np.float32)
        self._mul = (scale / std).astype(np.float32)
        self._add = (-mean / std).astype(np.float32)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        size = self.spec.size
        if image.shape[0] != size or image.shape[1] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        if self.spec.channel_order == "BGR":
            image = image[..., ::-1]
        x = image.astype(np.float32) * self._mul + self._add
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    def invert(self, x: torch.Tensor) -> np.ndarray:
        """Tensor (3, H, W) -> uint8 RGB image, for figures."""
        arr = (x.detach().cpu().numpy().transpose(1, 2, 0) - self._add) / self._mul
        if self.spec.channel_order == "BGR":
            arr = arr[..., ::-1]
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
