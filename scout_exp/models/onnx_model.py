"""ONNX recognisers (e.g. insightface's ``w600k_r50.onnx``) as torch modules (``model=onnx``).

``runtime=torch`` converts the graph with ``onnx2torch`` (PyPI), so gradient methods apply at any
converted layer (default: the last ``nn.Conv2d``). ``runtime=onnxruntime`` runs the file in
onnxruntime without conversion: black-box methods (RISE, occlusion) need nothing else. Before
conversion, ``Identity`` nodes that merely rename an initializer (the torch exporter writes them
for weights it de-duplicates) are folded into initializers, which onnx2torch requires.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.models.registry import register_model

RUNTIMES = ("torch", "onnxruntime")


class OnnxRuntimeModel(nn.Module):
    """An ONNX file run by onnxruntime (CPU): (B, 3, H, W) float -> its first output; no gradients."""

    def __init__(self, path: str) -> None:
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: Tensor) -> Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)


def _read_onnx(path: Path) -> object:
    import onnx
    from onnx import numpy_helper

    try:
        proto = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError and others for a file that is not a model
        raise UserError(f"cannot read {path} as an ONNX model: {str(err).splitlines()[0]}") from None
    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    renames = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers]
    for node in renames:
        graph.initializer.append(
            numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[0]]), node.output[0])
        )
        graph.node.remove(node)
    return proto


def convert_onnx(path: str | Path) -> nn.Module:
    """The ONNX model at ``path`` as a torch module (onnx2torch).

    Raises UserError for a missing or unreadable file, and for an operator onnx2torch cannot
    convert (naming it, and that ``runtime=onnxruntime`` with a black-box method still works).
    """
    from onnx2torch import convert

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ONNX file {path} does not exist; pass model.kwargs.weights=<model.onnx>")
    proto = _read_onnx(path)
    try:
        return convert(proto)
    except NotImplementedError as err:
        op = re.search(r"operation_type='([^']+)', version=(\d+)", str(err))
        what = f"operator {op.group(1)} (opset {op.group(2)})" if op else str(err).splitlines()[0]
        raise UserError(
            f"onnx2torch cannot convert {path}: {what}; black-box methods still work without conversion: "
            "model.kwargs.runtime=onnxruntime attribution=rise (or occlusion)"
        ) from None


@register_model(name="onnx")
def onnx_model(num_classes: int, weights: str, runtime: str = "torch") -> nn.Module:
    """The recogniser in the ONNX file ``weights``; its outputs are the graph's (``num_classes`` is not used).

    ``runtime``: ``torch`` (converted, gradients) or ``onnxruntime`` (as is, black-box methods only).
    """
    if runtime not in RUNTIMES:
        raise UserError(f"model.kwargs.runtime={runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        if not Path(weights).expanduser().is_file():
            raise UserError(f"ONNX file {weights} does not exist; pass model.kwargs.weights=<model.onnx>")
        return OnnxRuntimeModel(str(Path(weights).expanduser()))
    model = convert_onnx(weights)
    model.default_target_layer = last_map_layer(model, _input_side(weights))  # type: ignore[assignment]
    return model


def _input_side(path: str) -> int:
    """The static height of the ONNX graph's first input, or 112 (ArcFace crops) when it is dynamic."""
    import onnx

    dims = onnx.load(str(Path(path).expanduser()), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return int(dims[2].dim_value) if len(dims) == 4 and dims[2].dim_value > 0 else 112


def last_map_layer(model: nn.Module, side: int) -> str | None:
    """Name of the last module (in execution order) whose output is a 4-D map, from one probe forward at ``side`` px.

    A converted graph registers its modules in node order, where a residual block's shortcut conv may
    come after its main path; the execution order finds the layer feeding the embedding head.
    """
    names = {module: name for name, module in model.named_modules() if name}
    order: list[str] = []
    hooks = [
        m.register_forward_hook(
            lambda mod, _i, out: order.append(names[mod]) if isinstance(out, Tensor) and out.dim() == 4 else None
        )
        for m in names
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, side, side))
    finally:
        for hook in hooks:
            hook.remove()
    return order[-1] if order else None
