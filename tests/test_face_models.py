"""Face models researchers use: IResNet, AdaFace, MagFace, MobileFaceNet, face ViT, timm, a user module, ONNX.

Each reads its weights in the published layout and format (written here as small random files),
is explained from the command line, and refuses a file of another network in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scout_exp.attribution import create_attribution, list_attributions
from scout_exp.attribution.registry import black_box_methods
from scout_exp.data.faceparts import FaceParts
from scout_exp.errors import UserError
from scout_exp.io import save_image
from scout_exp.models import create_model
from tests.conftest import run_dir, run_entry
from tests.face_model_files import (
    randomise,
    write_adaface_checkpoint,
    write_magface_checkpoint,
    write_onnx,
    write_state_dict,
)

# (name, shape) of keys in the published files, from the reference code's layouts (docs/models.md)
PUBLISHED_KEYS = {
    "iresnet50": {
        "conv1.weight": (64, 3, 3, 3),
        "prelu.weight": (64,),
        "layer1.0.downsample.0.weight": (64, 64, 1, 1),
        "layer3.13.bn3.running_var": (256,),
        "layer4.2.conv2.weight": (512, 512, 3, 3),
        "fc.weight": (512, 512 * 7 * 7),
        "features.running_mean": (512,),
    },
    "adaface_ir50": {
        "input_layer.0.weight": (64, 3, 3, 3),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "body.23.res_layer.5.running_var": (512,),
        "output_layer.3.weight": (512, 512 * 7 * 7),
        "output_layer.4.running_mean": (512,),
    },
    "mobilefacenet": {
        "layers.0.layers.0.weight": (128, 3, 3, 3),
        "layers.1.layers.0.weight": (128, 2, 3, 3),
        "layers.2.layers.1.layers.0.weight": (128, 1, 3, 3),
        "conv_sep.layers.0.weight": (512, 256, 1, 1),
        "features.layers.0.layers.0.weight": (512, 1, 7, 7),
        "features.layers.2.weight": (512, 512),
    },
    "face_vit_t": {
        "patch_embed.proj.weight": (256, 3, 9, 9),
        "pos_embed": (1, 144, 256),
        "mask_token": (1, 1, 256),
        "blocks.11.attn.qkv.weight": (768, 256),
        "blocks.11.mlp.fc1.weight": (1024, 256),
        "feature.0.weight": (256, 144 * 256),
        "feature.3.running_mean": (512,),
    },
}
ABSENT_KEYS = {
    "adaface_ir50": ["body.0.shortcut_layer.0.weight", "output_layer.4.weight"],  # MaxPool shortcut; affine=False
    "face_vit_t": ["blocks.0.attn.qkv.bias", "cls_token"],
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_KEYS))
def test_state_dict_keys_are_the_published_layout(name: str) -> None:
    state = create_model(name, 512).state_dict()
    for key, shape in PUBLISHED_KEYS[name].items():
        assert tuple(state[key].shape) == shape, (name, key)
    for key in ABSENT_KEYS.get(name, []):
        assert key not in state, (name, key)


@pytest.mark.parametrize(
    ("name", "blocks"), [("iresnet18", 8), ("iresnet34", 16), ("iresnet100", 49), ("iresnet200", 98)]
)
def test_iresnet_depths_have_their_published_block_counts(name: str, blocks: int) -> None:
    model = create_model(name, 512)
    assert sum(1 for n, _ in model.named_modules() if n.count(".") == 1 and n.startswith("layer")) == blocks


def _outputs(model: nn.Module, seed: int = 0) -> torch.Tensor:
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize(
    ("name", "writer"),
    [
        ("iresnet18", write_state_dict),
        ("iresnet18", write_magface_checkpoint),
        ("adaface_ir18", write_adaface_checkpoint),
        ("mobilefacenet", write_state_dict),
        ("face_vit_t", write_state_dict),
    ],
)
def test_published_files_load_to_identical_outputs(name: str, writer, tmp_path: Path) -> None:
    source = randomise(create_model(name, 512))
    path = writer(source, tmp_path / "weights.ckpt")
    loaded = create_model(name, 512, weights=str(path))
    assert torch.equal(_outputs(source), _outputs(loaded))


def test_another_depth_is_named_in_one_line(tmp_path: Path) -> None:
    path = write_state_dict(create_model("iresnet18", 512), tmp_path / "backbone.pth")
    with pytest.raises(UserError) as err:
        create_model("iresnet50", 512, weights=str(path))
    message = str(err.value)
    assert "\n" not in message and "does not fit model=iresnet50" in message
    assert "missing layer1.2.bn1.weight" in message and "an IResNet-18 (model=iresnet18)" in message


def test_another_architecture_is_named_in_one_line(tmp_path: Path) -> None:
    path = write_adaface_checkpoint(create_model("adaface_ir18", 512), tmp_path / "adaface_ir18.ckpt")
    with pytest.raises(UserError, match=r"unexpected .*the file looks like an AdaFace IR-18 \(model=adaface_ir18\)"):
        create_model("iresnet18", 512, weights=str(path))


def test_a_pickle_with_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Path("/")}, path)
    with pytest.raises(UserError, match="never loaded"):
        create_model("iresnet18", 512, weights=str(path))


def test_adaface_reads_bgr() -> None:
    from scout_exp.models import model_info

    assert model_info("adaface_ir50").input_spec.channel_order == "BGR"
    assert model_info("iresnet50").input_spec.channel_order == "RGB"


# --- ViT: token outputs explained on the patch grid ---------------------------------------------


def _small_vit() -> nn.Module:
    from scout_exp.models.face_vit import FaceViT

    return randomise(FaceViT(dim=32, depth=2, embedding=16))


@pytest.mark.parametrize("method", sorted(m for m in list_attributions() if m not in ("fggb",)))
def test_every_builtin_method_explains_a_vit_on_its_token_grid(method: str) -> None:
    model = _small_vit()
    options = {"masks": 8, "batch_size": 8} if method in ("rise", "corrrise") else {}
    if method == "corrrise":
        options["patch_size"] = 30
    layer = None if method in black_box_methods() else "blocks.1"
    attribution = create_attribution(method, model, layer, **options)
    maps = attribution(torch.randn(2, 3, 112, 112), lambda out: out[:, :2])
    expected = (12, 12) if layer is not None else (112, 112)
    assert tuple(maps.shape) == (2, 2, *expected) if method != "occlusion" else maps.shape[:2] == (2, 2)
    assert torch.isfinite(maps).all()


def test_a_vit_layer_that_is_not_a_token_block_is_one_line() -> None:
    attribution = create_attribution("gradcam", _small_vit(), "feature.0")
    with pytest.raises(UserError, match="not a sequence of 144 patch tokens; choose a transformer block"):
        attribution(torch.randn(1, 3, 112, 112), lambda out: out[:, :1])


def test_timm_vit_drops_its_class_token_and_names_its_head() -> None:
    model = create_model("timm", 4, arch="vit_tiny_patch16_224", img_size=112)
    assert model.classifier_name == "head" and model.default_target_layer == "blocks.11"
    maps = create_attribution("gradcam", model, "blocks.11")(torch.randn(1, 3, 112, 112), lambda out: out[:, :2])
    assert tuple(maps.shape) == (1, 2, 7, 7)


def test_unknown_timm_name_lists_close_ones() -> None:
    with pytest.raises(UserError, match="unknown timm model 'resnet_18'; close names: .*resnet18"):
        create_model("timm", 4, arch="resnet_18")


# --- ONNX --------------------------------------------------------------------------------------


def test_onnx_conversion_equals_onnxruntime(tmp_path: Path) -> None:
    from scout_exp.models.onnx_model import OnnxRuntimeModel

    path = write_onnx(randomise(create_model("iresnet18", 64)), tmp_path / "r18.onnx")
    converted = create_model("onnx", 0, weights=str(path))
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        diff = (converted(x) - OnnxRuntimeModel(str(path))(x)).abs().max().item()
    assert diff < 1e-4
    assert converted.default_target_layer.startswith("bn2")  # the map feeding the embedding head


def test_an_onnx_operator_onnx2torch_lacks_is_named(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Hardmax", ["input"], ["output"])
    graph = helper.make_graph(
        [node],
        "hardmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 112, 112])],
    )
    path = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(UserError) as err:
        create_model("onnx", 0, weights=str(path))
    assert "operator Hardmax (opset 13)" in str(err.value) and "runtime=onnxruntime attribution=rise" in str(err.value)


# --- one command per family, end to end ---------------------------------------------------------


def _two_faces(tmp_path: Path) -> tuple[Path, Path]:
    fp = FaceParts(num_identities=4, images_per_identity=4, image_size=112)
    a, b = (save_image(fp.render(i).image, tmp_path / f"face{i}.png") for i in (0, 5))
    return a, b


def _net_file(tmp_path: Path) -> Path:
    (tmp_path / "my_nets.py").write_text(
        "import torch\n"
        "from torch import nn\n\n\n"
        "class TinyEmbedder(nn.Module):\n"
        "    def __init__(self, width: int = 8):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1))\n"
        "        self.head = nn.Linear(width, 16)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(self.body(x).mean((2, 3)))\n"
    )
    return tmp_path / "my_nets.py"


def _family_overrides(family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if family == "iresnet":
        path = write_state_dict(randomise(create_model("iresnet18", 512)), tmp_path / "backbone.pth")
        return ["model=iresnet18", f"model.kwargs.weights={path}"]
    if family == "adaface":
        path = write_adaface_checkpoint(randomise(create_model("adaface_ir18", 512)), tmp_path / "adaface_ir18.ckpt")
        return ["model=adaface_ir18", f"model.kwargs.weights={path}"]
    if family == "vit":
        path = write_state_dict(randomise(create_model("face_vit_t", 512)), tmp_path / "backbone.pth")
        return ["model=face_vit_t", f"model.kwargs.weights={path}"]
    if family == "timm":
        model = randomise(create_model("timm", 256, arch="resnet18"))  # an embedder: fc gives 256-d descriptors
        path = write_state_dict(model, tmp_path / "resnet18.pth")
        return ["model=timm", "model.arch=resnet18", f"model.kwargs.weights={path}", "model.embedding=256"]
    if family == "module":
        _net_file(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))  # as PYTHONPATH=. does for the command
        return [
            "model=module",
            "model.kwargs.net._target_=my_nets.TinyEmbedder",
            "+model.kwargs.net.width=8",
            "model.embedding=16",
            "model.target_layer=body.2",
        ]
    path = write_onnx(randomise(create_model("iresnet18", 512)), tmp_path / "w600k_r18.onnx")
    return ["model=onnx", f"model.kwargs.weights={path}"]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["iresnet", "adaface", "vit", "timm", "module", "onnx"])
def test_one_command_per_family_explains_a_pair(family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_faces(tmp_path)
    proc = run_entry(
        "explain.py",
        *_family_overrides(family, tmp_path, monkeypatch),
        "mode=verify",
        f"images=[{a},{b}]",
        "logger=none",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = run_dir(tmp_path, "explain")
    record = json.loads((out / "explanations.json").read_text())["pairs"][0]
    assert -1.0 <= record["cosine"] <= 1.0 and (out / record["figure"]).is_file()
    assert np.isfinite(record["cosine"])


@pytest.mark.slow
def test_onnxruntime_runs_black_box_methods_only(tmp_path: Path) -> None:
    a, b = _two_faces(tmp_path)
    path = write_onnx(randomise(create_model("iresnet18", 512)), tmp_path / "r18.onnx")
    common = ["model=onnx", f"model.kwargs.weights={path}", "model.kwargs.runtime=onnxruntime", "mode=verify"]
    proc = run_entry(
        "explain.py",
        *common,
        f"images=[{a},{b}]",
        "attribution=rise",
        "attribution.kwargs.masks=16",
        "logger=none",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_module_that_cannot_be_found_is_one_line(tmp_path: Path) -> None:
    a, _ = _two_faces(tmp_path)
    proc = run_entry(
        "explain.py",
        "model=module",
        "model.kwargs.net._target_=no_such_lab.Net",
        "model.embedding=8",
        "mode=verify",
        f"images=[{a},{a}]",
        "logger=none",
        cwd=tmp_path,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == "error: model.kwargs.net: Error locating target 'no_such_lab.Net' (is its module on PYTHONPATH?)"
