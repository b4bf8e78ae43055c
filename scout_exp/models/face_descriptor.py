"""dlib's 29-layer face-recognition ResNet (128-d descriptors), ported from face-api's TF.js graph.

Architecture and weight format: docs/method.md section 5, checked against face-api's
``src/faceRecognitionNet/{FaceRecognitionNet,residualLayer,convLayer,scaleLayer}.ts``:

* input 150x150 RGB in 0-255, ``(x - mean) / 255`` with mean (122.782, 117.001, 104.298);
* ``conv32_down``: 7x7/2 valid conv + bias, per-channel scale ``x * w + b``, ReLU; 3x3/2 valid max-pool;
* residual block: [3x3/1 "same" conv + bias + scale + ReLU] -> [3x3/1 conv + bias + scale],
  add the input, ReLU;
* down block: the first conv is 3x3/2 valid; the shortcut is a 2x2/2 valid average pool,
  zero-padded in channels; when the main path comes out smaller it gets zero rows/columns at
  the bottom/right; add, ReLU;
* stages 32 (3 blocks), 64 (down + 3), 128 (down + 2), 256 (down + 2), ``conv256_down_out``;
  global average pool; ``fc`` 256 -> 128 without bias.

Registry contract: with ``num_classes=128`` (the default) ``fc`` *is* dlib's embedding layer, so
the model maps images to descriptors and :func:`split_classifier` yields the 256-d pooled trunk.
Any other ``num_classes`` keeps the trunk and puts a fresh ``fc`` 256 -> num_classes on it (for
fine-tuning as an identity classifier). To explain identities with the pretrained descriptor,
wrap it in :class:`scout_exp.models.gallery.GalleryClassifier`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scout_exp.errors import UserError
from scout_exp.models.registry import register_model
from scout_exp.zoo.fetch import weights_path
from scout_exp.zoo.registry import FACE_DESCRIPTOR_INPUT

SAME_PERSON_THRESHOLD = 0.6
"""dlib's decision threshold: descriptors closer than this (Euclidean) belong to the same person."""

MANIFEST_NAME = "face_recognition_model-weights_manifest.json"
_STAGES = (
    ("conv32", 32, 3, False),
    ("conv64", 64, 3, True),
    ("conv128", 128, 2, True),
    ("conv256", 256, 2, True),
)


class ChannelScale(nn.Module):
    """dlib/face-api scale layer: per-channel ``x * weight + bias`` (a frozen BatchNorm in effect)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ConvScale(nn.Module):
    """Convolution with bias followed by a :class:`ChannelScale` (face-api ``convLayer`` without ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=True)
        self.scale = ChannelScale(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(self.conv(x))


class ResidualBlock(nn.Module):
    """Two 3x3 conv+scale layers with an identity (or pooled, channel-padded) shortcut."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = ConvScale(cout, cout, 3, stride=1, padding=1)
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = x
        if self.down:
            shortcut = F.avg_pool2d(x, kernel_size=2, stride=2)
            if self.extra_channels:
                shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
            dh = shortcut.shape[-2] - out.shape[-2]
            dw = shortcut.shape[-1] - out.shape[-1]
            if dh or dw:
                out = F.pad(out, (0, dw, 0, dh))
        return F.relu(out + shortcut)


class FaceDescriptorNet(nn.Module):
    """dlib ResNet-29 trunk + ``fc``; attribute names mirror face-api's weight names."""

    def __init__(self, num_classes: int = 128) -> None:
        super().__init__()
        self.conv32_down = ConvScale(3, 32, 7, stride=2, padding=0)
        cin = 32
        for prefix, cout, blocks, has_down in _STAGES:
            if has_down:
                setattr(self, f"{prefix}_down", ResidualBlock(cin, cout, down=True))
            for i in range(1, blocks + 1):
                setattr(self, f"{prefix}_{i}", ResidualBlock(cout, cout, down=False))
            cin = cout
        self.conv256_down_out = ResidualBlock(256, 256, down=True)
        self.fc = nn.Linear(256, num_classes, bias=num_classes != 128)

    def _blocks(self) -> list[nn.Module]:
        names = []
        for prefix, _, blocks, has_down in _STAGES:
            names += [f"{prefix}_down"] if has_down else []
            names += [f"{prefix}_{i}" for i in range(1, blocks + 1)]
        return [getattr(self, n) for n in names + ["conv256_down_out"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv32_down(x))
        out = F.max_pool2d(out, kernel_size=3, stride=2)
        for block in self._blocks():
            out = block(out)
        return self.fc(out.mean(dim=(2, 3)))


def read_tfjs_weights(folder: str | os.PathLike[str], manifest_name: str = MANIFEST_NAME) -> dict[str, np.ndarray]:
    """Parse a TF.js weights manifest and its ``.bin`` shards into float32 arrays, by name.

    Per group the shards are concatenated and the tensors read in manifest order; quantised
    tensors (uint8/uint16) are dequantised as ``q * scale + min`` (docs/method.md section 5).
    Written by hand because no maintained Python package reads this format without TensorFlow.
    """
    folder = Path(folder)
    manifest_path = folder / manifest_name
    try:
        groups = json.loads(manifest_path.read_text())
    except FileNotFoundError as err:
        raise UserError(
            f"weights manifest {manifest_path} not found; run `python -m scout_exp.zoo fetch face_descriptor`"
        ) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"weights manifest {manifest_path} is not valid JSON ({err}); fetch the weights again") from err
    if not isinstance(groups, list):
        raise UserError(f"weights manifest {manifest_path} must be a list of weight groups")
    tensors: dict[str, np.ndarray] = {}
    for group in groups:
        try:
            paths, specs = group["paths"], group["weights"]
            buf = b"".join((folder / p).read_bytes() for p in paths)
        except (KeyError, TypeError) as err:
            raise UserError(f"weights manifest {manifest_path}: a group lacks 'paths' or 'weights' ({err})") from err
        except FileNotFoundError as err:
            raise UserError(f"weight shard {err.filename} listed in {manifest_path} is missing") from err
        offset = 0
        for spec in specs:
            arr, offset = _read_tensor(buf, offset, spec, manifest_path)
            tensors[spec["name"]] = arr
        if offset != len(buf):
            raise UserError(
                f"weight shards {paths} hold {len(buf)} bytes but {manifest_path} describes {offset}; "
                "the files do not belong together"
            )
    return tensors


def _read_tensor(buf: bytes, offset: int, spec: dict[str, Any], manifest: Path) -> tuple[np.ndarray, int]:
    shape = [int(d) for d in spec.get("shape", [])]
    count = int(np.prod(shape)) if shape else 1
    quant = spec.get("quantization")
    stored = quant["dtype"] if quant else spec.get("dtype", "float32")
    dtypes = {"float32": "<f4", "int32": "<i4", "uint8": "u1", "uint16": "<u2"}
    if stored not in dtypes:
        raise UserError(f"{manifest}: tensor {spec.get('name')!r} has unsupported dtype {stored!r}")
    nbytes = count * np.dtype(dtypes[stored]).itemsize
    if offset + nbytes > len(buf):
        raise UserError(f"{manifest}: the shards end before tensor {spec.get('name')!r}; the .bin file is truncated")
    arr = np.frombuffer(buf, dtype=dtypes[stored], count=count, offset=offset).astype(np.float32)
    if quant:
        arr = arr * np.float32(quant["scale"]) + np.float32(quant["min"])
    return arr.reshape(shape), offset + nbytes


def tfjs_name(torch_name: str) -> str:
    """face-api name of a :class:`FaceDescriptorNet` parameter (``a.conv.weight`` -> ``a/conv/filters``)."""
    if torch_name == "fc.weight":
        return "fc"
    parts = torch_name.split(".")
    leaf = {
        ("conv", "weight"): "filters",
        ("conv", "bias"): "bias",
        ("scale", "weight"): "weights",
        ("scale", "bias"): "biases",
    }[(parts[-2], parts[-1])]
    return "/".join(parts[:-1] + [leaf])


def load_face_api_weights(
    model: FaceDescriptorNet, folder: str | os.PathLike[str], load_fc: bool = True
) -> FaceDescriptorNet:
    """Copy face-api's weights into ``model`` (HWIO -> OIHW, fc transposed), checking every name and shape."""
    tensors = read_tfjs_weights(folder)
    expected = {}
    for name, param in model.named_parameters():
        if name.startswith("fc.") and not load_fc:
            continue
        expected[tfjs_name(name)] = (name, param)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected) - ({"fc"} if not load_fc else set()))
    if missing or extra:
        raise UserError(
            f"face-api weights in {folder} do not match the network: missing {missing[:5]}, "
            f"unexpected {extra[:5]}; fetch the face_descriptor weights again"
        )
    with torch.no_grad():
        for tf_name, (name, param) in expected.items():
            arr = tensors[tf_name]
            if arr.ndim == 4:
                arr = arr.transpose(3, 2, 0, 1)
            elif arr.ndim == 2:
                arr = arr.T
            if tuple(arr.shape) != tuple(param.shape):
                raise UserError(
                    f"face-api weight {tf_name} has shape {tuple(arr.shape)} after conversion, "
                    f"the network expects {tuple(param.shape)} for {name}"
                )
            param.copy_(torch.from_numpy(np.ascontiguousarray(arr)))
    return model


# the last block with a useful grid (128 x 8 x 8 on a 150 crop); the 256-channel stages are 4x4 and
# 2x2, too coarse to show face parts
@register_model(input_spec=FACE_DESCRIPTOR_INPUT, target_layer="conv128_2")
def face_descriptor(num_classes: int = 128, pretrained: bool = False, weights_dir: str | None = None) -> nn.Module:
    """dlib's face ResNet; ``pretrained`` loads face-api's weights from ``weights_dir`` or the zoo cache."""
    model = FaceDescriptorNet(num_classes=num_classes)
    if pretrained or weights_dir is not None:
        if weights_dir is None:
            weights_dir = str(weights_path("face_descriptor"))
        load_face_api_weights(model, weights_dir, load_fc=num_classes == 128)
    return model
