"""dlib ResNet port: layer arithmetic, down-block padding, TF.js weight loading, parity on real faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scout_exp.data.transforms import Preprocess
from scout_exp.errors import UserError
from scout_exp.models import create_model, split_classifier
from scout_exp.models.face_descriptor import (
    MANIFEST_NAME,
    SAME_PERSON_THRESHOLD,
    FaceDescriptorNet,
    ResidualBlock,
    load_face_api_weights,
    tfjs_name,
)
from scout_exp.zoo.registry import FACE_DESCRIPTOR_INPUT

# face-api 1.7.15 (TF.js 4.22, CPU backend) descriptor of the 150x150 pattern
# img[y, x, c] = (7x + 13y + 50c) mod 256, computed with faceRecognitionNet.computeFaceDescriptor.
TFJS_PATTERN_DESCRIPTOR = [
    -0.060561,
    0.133021,
    0.068887,
    0.002168,
    -0.057283,
    -0.032604,
    -0.072372,
    0.002896,
    0.092890,
    0.003787,
    0.233583,
    -0.022556,
    -0.247749,
    -0.020534,
    -0.028575,
    0.089437,
    -0.148623,
    -0.036539,
    -0.138284,
    -0.114846,
    0.059156,
    0.012525,
    -0.014037,
    -0.019241,
    -0.117643,
    -0.266571,
    -0.079975,
    -0.120478,
    0.081278,
    -0.174760,
    0.027981,
    -0.006406,
    -0.153230,
    -0.038721,
    -0.013378,
    0.016819,
    0.002739,
    -0.062362,
    0.169444,
    -0.016599,
    -0.126104,
    -0.014392,
    -0.002388,
    0.256699,
    0.185587,
    0.061944,
    0.003811,
    -0.037733,
    0.036048,
    -0.250957,
    -0.004093,
    0.171686,
    0.071432,
    0.134216,
    0.043487,
    -0.150364,
    0.017800,
    0.087091,
    -0.136737,
    0.017233,
    -0.003287,
    -0.126483,
    -0.023659,
    -0.102028,
    0.222154,
    0.057078,
    -0.089402,
    -0.115604,
    0.134184,
    -0.136466,
    -0.027238,
    0.096254,
    -0.095366,
    -0.146527,
    -0.254239,
    0.097825,
    0.361310,
    0.161786,
    -0.169289,
    0.024884,
    -0.127180,
    -0.051702,
    -0.003421,
    0.006098,
    -0.080947,
    0.008695,
    -0.068408,
    0.068576,
    0.203256,
    -0.109217,
    0.041001,
    0.167656,
    -0.042427,
    0.025674,
    -0.016917,
    -0.010814,
    -0.091181,
    -0.001557,
    -0.038359,
    -0.001249,
    0.108184,
    -0.134514,
    0.038015,
    0.090339,
    -0.178611,
    0.090600,
    0.006445,
    -0.068500,
    0.006614,
    0.014131,
    -0.063739,
    -0.039367,
    0.252968,
    -0.237245,
    0.263984,
    0.240773,
    0.016950,
    0.113994,
    0.051901,
    0.123222,
    -0.060514,
    -0.025761,
    -0.113845,
    -0.056527,
    0.021490,
    -0.007592,
    -0.020537,
    -0.013039,
]


def _cached_weights() -> Path:
    from scout_exp.zoo import weights_path

    try:
        return weights_path("face_descriptor")
    except UserError as err:
        pytest.skip(f"face_descriptor weights not cached ({err})")


def _pattern() -> np.ndarray:
    y, x, c = np.mgrid[0:150, 0:150, 0:3]
    return ((7 * x + 13 * y + 50 * c) % 256).astype(np.uint8)


def test_stage_sizes_follow_valid_conv_arithmetic() -> None:
    # 150 -7x7/2-> 72 -pool-> 35 -> 35 -down-> 17 -down-> 8 -down-> 4 (3 padded) -down-> 2 (1 padded)
    net = FaceDescriptorNet()
    sizes: dict[str, tuple[int, ...]] = {}
    names = ["conv32_down", "conv32_3", "conv64_down", "conv128_down", "conv256_down", "conv256_down_out"]
    for name in names:
        getattr(net, name).register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, tuple(o.shape[1:])))
    out = net(torch.zeros(2, 3, 150, 150))
    assert out.shape == (2, 128)
    assert sizes == {
        "conv32_down": (32, 72, 72),
        "conv32_3": (32, 35, 35),
        "conv64_down": (64, 17, 17),
        "conv128_down": (128, 8, 8),
        "conv256_down": (256, 4, 4),
        "conv256_down_out": (256, 2, 2),
    }


def test_down_block_pads_channels_and_bottom_right() -> None:
    block = ResidualBlock(2, 4, down=True)
    with torch.no_grad():
        for conv in (block.conv1, block.conv2):
            conv.conv.weight.zero_()
            conv.conv.bias.zero_()
        block.conv2.scale.bias.fill_(1.0)  # main path = 1 everywhere it exists
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8) / 10
    out = block(x)[0].detach().numpy()
    xn = x[0].numpy()
    pooled = xn.reshape(2, 4, 2, 4, 2).mean(axis=(2, 4))  # 2x2/2 average pool by hand
    expected = np.zeros((4, 4, 4), dtype=np.float32)
    expected[:2] = pooled
    expected[:, :3, :3] += 1.0  # 8 -3x3/2 valid-> 3, zero row/column added at bottom/right
    np.testing.assert_allclose(out, np.maximum(expected, 0), atol=1e-6)


def test_registry_contract() -> None:
    net = create_model("face_descriptor", 128)
    assert isinstance(net.fc, nn.Linear) and net.fc.in_features == 256 and net.fc.bias is None
    trunk, fc = split_classifier(net)
    assert trunk(torch.zeros(1, 3, 150, 150)).shape == (1, 256) and fc.out_features == 128
    clf = create_model("face_descriptor", 7)
    assert clf(torch.zeros(1, 3, 150, 150)).shape == (1, 7)


def test_input_spec_matches_face_api_normalisation() -> None:
    img = _pattern()
    x = Preprocess(FACE_DESCRIPTOR_INPUT)(img).numpy()
    mean = np.array([122.782, 117.001, 104.298], dtype=np.float32)
    np.testing.assert_allclose(x, ((img - mean) / 255.0).transpose(2, 0, 1), atol=1e-5)


def _write_fake_face_api(folder: Path, net: FaceDescriptorNet) -> dict[str, np.ndarray]:
    """Write ``net``'s weights in face-api's format: HWIO, uint8-quantised except every 7th tensor."""
    specs, blobs, expected = [], [], {}
    for i, (name, param) in enumerate(net.named_parameters()):
        arr = param.detach().numpy()
        arr = arr.transpose(2, 3, 1, 0) if arr.ndim == 4 else (arr.T if arr.ndim == 2 else arr)
        spec = {"name": tfjs_name(name), "shape": list(arr.shape), "dtype": "float32"}
        if i % 7 == 0:
            blobs.append(arr.astype("<f4").tobytes())
            expected[name] = arr
        else:
            lo, scale = float(arr.min()), float(arr.max() - arr.min()) / 255 or 1.0
            q = np.clip(np.rint((arr - lo) / scale), 0, 255).astype(np.uint8)
            spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo}
            blobs.append(q.tobytes())
            expected[name] = q.astype(np.float32) * np.float32(scale) + np.float32(lo)
        specs.append(spec)
    (folder / "w.bin").write_bytes(b"".join(blobs))
    (folder / MANIFEST_NAME).write_text(json.dumps([{"paths": ["w.bin"], "weights": specs}]))
    return expected


def test_loader_dequantises_and_transposes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    expected = _write_fake_face_api(tmp_path, FaceDescriptorNet())
    net = load_face_api_weights(FaceDescriptorNet(), tmp_path)
    for name, param in net.named_parameters():
        ref = expected[name]
        ref = ref.transpose(3, 2, 0, 1) if ref.ndim == 4 else (ref.T if ref.ndim == 2 else ref)
        np.testing.assert_allclose(param.detach().numpy(), ref, rtol=1e-6, atol=1e-7, err_msg=name)


def test_loader_rejects_mismatches(tmp_path: Path) -> None:
    _write_fake_face_api(tmp_path, FaceDescriptorNet())
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    good_bin = (tmp_path / "w.bin").read_bytes()

    (tmp_path / "w.bin").write_bytes(good_bin[:-10])
    with pytest.raises(UserError, match="truncated"):
        load_face_api_weights(FaceDescriptorNet(), tmp_path)
    (tmp_path / "w.bin").write_bytes(good_bin + b"\0")
    with pytest.raises(UserError, match="do not belong together"):
        load_face_api_weights(FaceDescriptorNet(), tmp_path)
    (tmp_path / "w.bin").write_bytes(good_bin)

    renamed = json.loads(json.dumps(manifest))
    renamed[0]["weights"][3]["name"] = "conv32_down/scale/renamed"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(renamed))
    with pytest.raises(UserError, match="missing .*conv32_down/scale/biases"):
        load_face_api_weights(FaceDescriptorNet(), tmp_path)

    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_face_api_weights(FaceDescriptorNet(), tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_face_api_weights(FaceDescriptorNet(), tmp_path / "absent")


def test_matches_tfjs_reference_on_pattern() -> None:
    net = create_model("face_descriptor", 128, weights_dir=str(_cached_weights())).eval()
    with torch.no_grad():
        desc = net(Preprocess(FACE_DESCRIPTOR_INPUT)(_pattern())[None])[0].numpy()
    np.testing.assert_allclose(desc, np.array(TFJS_PATTERN_DESCRIPTOR), atol=2e-5)


def test_same_person_below_threshold_different_above() -> None:
    """Acceptance (a): aligned crops and jitters of Grace Hopper and Eileen Collins, dlib's 0.6 rule."""
    weights = _cached_weights()
    matplotlib_cbook = pytest.importorskip("matplotlib.cbook")
    skdata = pytest.importorskip("skimage.data")
    from facenet_pytorch import MTCNN

    from scout_exp.data.align import align_face
    from scout_exp.data.images import read_rgb

    net = create_model("face_descriptor", 128, weights_dir=str(weights)).eval()
    pre = Preprocess(FACE_DESCRIPTOR_INPUT)
    people = {
        "hopper": read_rgb(matplotlib_cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
        "collins": skdata.astronaut(),
    }
    detector = MTCNN(keep_all=True, min_face_size=80, device="cpu")
    desc = {}
    for name, img in people.items():
        h, w = img.shape[:2]
        off_centre = img[h // 12 :, w // 10 : w - w // 20]
        crops = [align_face(v, "dlib150", detector).image for v in (img, off_centre)]
        crops.append(crops[0][:, ::-1])  # mirror jitter
        contrast = np.clip(crops[1].astype(np.float32) * 0.8 + 20, 0, 255).astype(np.uint8)
        crops.append(contrast)
        with torch.no_grad():
            desc[name] = net(torch.stack([pre(c) for c in crops])).numpy()
    for name, d in desc.items():
        same = np.linalg.norm(d[:, None] - d[None], axis=-1)[np.triu_indices(len(d), 1)]
        assert same.max() < SAME_PERSON_THRESHOLD, (name, same)
    cross = np.linalg.norm(desc["hopper"][:, None] - desc["collins"][None], axis=-1)
    assert cross.min() > SAME_PERSON_THRESHOLD, cross
