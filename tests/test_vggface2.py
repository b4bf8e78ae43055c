"""VGGFace2 ResNet-50 layout, and the restricted loader for its pickled numpy weights."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet50

from scout_exp.errors import UserError
from scout_exp.models import create_model
from scout_exp.models.pickled_weights import load_into, load_pickled_weights
from scout_exp.models.vggface2 import VGGFACE2_INPUT, vggface2_resnet50


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine terms, so a missed copy shows in the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def _numpy_state(model: nn.Module, drop_counters: bool = True) -> dict[str, np.ndarray]:
    """The model's state as the public pickles hold it: name -> numpy array, no BN counters."""
    return {
        k: v.detach().numpy().copy()
        for k, v in model.state_dict().items()
        if not (drop_counters and k.endswith("num_batches_tracked"))
    }


def _dump(obj: object, path: os.PathLike[str], protocol: int = 2) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def test_default_model_gives_8631_logits_at_224() -> None:
    model = vggface2_resnet50().eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 8631)
    assert model.fc.in_features == 2048


def test_layout_is_caffe_resnet50_with_public_names() -> None:
    model = vggface2_resnet50(num_classes=5)
    state = model.state_dict()
    for name in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_var",
        "layer4.2.bn3.bias",
        "fc.weight",
        "fc.bias",
    ):
        assert name in state
    assert not any(k.endswith(".bias") and "conv" in k for k in state)  # Caffe convs carry no bias
    for stage, stride in zip((model.layer1, model.layer2, model.layer3, model.layer4), (1, 2, 2, 2)):
        assert stage[0].conv1.stride == (stride, stride)
        assert stage[0].conv2.stride == (1, 1)
        assert stage[0].downsample[0].stride == (stride, stride)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 6, 3]
    sizes = {}
    for name in ("maxpool", "layer4"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o.shape))
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 224, 224)).shape == (2, 5)
    assert sizes["maxpool"] == (2, 64, 56, 56)  # 112 -> ceil((112 - 3) / 2) + 1
    assert sizes["layer4"] == (2, 2048, 7, 7)


def test_matches_torchvision_resnet50_with_strides_moved() -> None:
    """Independent check: torchvision's ResNet-50, re-strided by hand to the Caffe layout, same output."""
    ours = vggface2_resnet50(num_classes=7).eval()
    _randomise_bn(ours)
    ref = resnet50(weights=None, num_classes=7).eval()
    ref.load_state_dict(ours.state_dict())
    ref.maxpool = nn.MaxPool2d(3, 2, 0, ceil_mode=True)
    ref.avgpool = nn.AvgPool2d(7)
    for stage in (ref.layer2, ref.layer3, ref.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)
        ref.layer2[0].conv1.stride, ref.layer2[0].conv2.stride = (1, 1), (2, 2)  # torchvision layout differs
        assert not torch.allclose(ours(x), ref(x), atol=1e-3)


def test_wrong_input_size_is_a_user_error() -> None:
    with pytest.raises(UserError, match="224x224"):
        vggface2_resnet50(num_classes=3).eval()(torch.zeros(1, 3, 160, 160))


def test_input_spec_is_bgr_mean_subtracted_0_255() -> None:
    assert VGGFACE2_INPUT.channel_order == "BGR" and VGGFACE2_INPUT.size == 224
    assert VGGFACE2_INPUT.pixel_scale == 255.0 and tuple(VGGFACE2_INPUT.mean) == (91.4953, 103.8827, 131.0912)


def test_pickle_round_trip_gives_identical_outputs(tmp_path) -> None:
    source = vggface2_resnet50(num_classes=10).eval()
    _randomise_bn(source, seed=1)
    path = tmp_path / "resnet50_ft.pkl"
    _dump(_numpy_state(source), path)
    loaded = create_model("vggface2_resnet50", num_classes=10, weights=str(path)).eval()
    fresh = vggface2_resnet50(num_classes=10).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = source(x)
        assert torch.equal(loaded(x), expected)
        assert not torch.allclose(fresh(x), expected)
    assert torch.equal(loaded.layer3[2].bn2.running_var, source.layer3[2].bn2.running_var)


def _python2_pickle(name: bytes, values: list[float]) -> bytes:
    """A {name: float32 vector} pickle opcode by opcode as Python 2 + numpy 1.x wrote the public files.

    Byte strings are SHORT_BINSTRING (read back as latin1 text) and numpy lives under numpy.core.
    """
    data = struct.pack(f"<{len(values)}f", *values)
    return (
        b"\x80\x02}U"
        + bytes([len(name)])
        + name
        + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R("
        + b"K\x01K"
        + bytes([len(values)])
        + b"\x85cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R("
        + b"K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U"
        + bytes([len(data)])
        + data
        + b"tbs."
    )


def test_loads_python2_numpy1_pickle(tmp_path) -> None:
    path = tmp_path / "py2.pkl"
    path.write_bytes(_python2_pickle(b"fc.bias", [1.5, -2.0, 0.25]))
    weights = load_pickled_weights(path)
    assert list(weights) == ["fc.bias"] and weights["fc.bias"].dtype == np.float32
    fc = nn.Linear(2, 3)
    weights["fc.weight"] = np.zeros((3, 2), np.float32)
    load_into(nn.Sequential(fc), {f"0.{k[3:]}": v for k, v in weights.items()}, source=str(path))
    assert fc.bias.tolist() == [1.5, -2.0, 0.25]


def test_loads_python3_protocol5_pickles_with_counters(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    weights = {
        "0.weight": np.full((4, 3, 3, 3), 0.5, np.float32),
        "0.bias": np.arange(4, dtype=np.float32),
        "1.weight": np.ones(4, np.float32),
        "1.bias": np.zeros(4, np.float32),
        "1.running_mean": np.arange(4, dtype=np.float32),
        "1.running_var": np.ones(4, np.float32),
        "1.num_batches_tracked": np.array(7),
    }
    path = tmp_path / "w.pkl"
    _dump(weights, path, protocol=5)
    load_into(model, load_pickled_weights(path), source=str(path))
    assert torch.equal(model[0].weight, torch.full((4, 3, 3, 3), 0.5))
    assert torch.equal(model[1].running_mean, torch.arange(4.0))
    assert int(model[1].num_batches_tracked) == 7


def test_class_count_mismatch_is_refused_with_a_hint(tmp_path) -> None:
    path = tmp_path / "resnet50_scratch.pkl"
    _dump(_numpy_state(vggface2_resnet50(num_classes=4)), path)
    with pytest.raises(UserError) as err:
        vggface2_resnet50(num_classes=6, weights=str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "fc.weight (model (6, 2048), file (4, 2048))" in msg and "fc.bias" in msg
    assert "expects a pickle with 6 classes" in msg and "8631" in msg


def test_missing_and_unexpected_names_are_listed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    weights = _numpy_state(model)
    del weights["1.running_var"]
    weights["1.extra"] = np.zeros(1, np.float32)
    with pytest.raises(UserError, match=r"1 missing: 1\.running_var; 1 unexpected: 1\.extra"):
        load_into(model, weights, source="w.pkl")


def test_names_with_a_prefix_are_refused(tmp_path) -> None:
    path = tmp_path / "dp.pkl"
    weights = {f"module.{k}": v for k, v in _numpy_state(vggface2_resnet50(num_classes=3)).items()}
    _dump(weights, path)
    with pytest.raises(UserError, match=r"267 missing: conv1\.weight, .* and 263 more; 267 unexpected: module\."):
        vggface2_resnet50(num_classes=3, weights=str(path))


class _Exploit:
    """Unpickling this with plain pickle would run a shell command that creates a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_in_a_pickle_is_refused_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    _dump({"conv1.weight": _Exploit(str(marker))}, path)
    with pytest.raises(UserError) as err:
        load_pickled_weights(path)
    assert not marker.exists()
    assert str(path) in str(err.value) and f"{os.system.__module__}.system" in str(err.value)


class _Custom:
    pass


def test_custom_class_and_callable_references_are_refused(tmp_path) -> None:
    for i, payload in enumerate(({"a": _Custom()}, {"a": os.system}, {"a": eval})):
        path = tmp_path / f"p{i}.pkl"
        _dump(payload, path)
        with pytest.raises(UserError, match="refusing to load"):
            load_pickled_weights(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "does not exist"),
        (b"not a pickle at all", "could not be unpickled"),
        (b"PK\x03\x04zip", "zip archive"),
        (pickle.dumps([np.zeros(2)], protocol=2), "holds a list"),
        (pickle.dumps({"a": "text"}, protocol=2), "maps 'a' to a str"),
        (pickle.dumps({"a": np.array([None, 1], dtype=object)}, protocol=2), "dtype object"),
        (pickle.dumps({"a": np.zeros(3)}, protocol=2)[:-20], "could not be unpickled"),
        (
            b"\x80\x02}X\x01\x00\x00\x00ac_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86Rs.",
            "unexpected _codecs.encode",
        ),
    ],
)
def test_bad_weight_files_are_user_errors(tmp_path, content, match) -> None:
    path = tmp_path / "w.pkl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_pickled_weights(path)
