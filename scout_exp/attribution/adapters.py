"""Adapters that run pytorch-grad-cam (``pgc:<Class>``) and Captum (``captum:<Method>``) methods.

They expose the engine's ``__call__(x, targets) -> (B, T, ., .)`` interface but run the third-party
code as is: one full forward and backward per target (slow, for comparison and for methods the
engine does not implement, such as ScoreCAM or EigenCAM).

Whatever the caller's autograd state (``torch.no_grad``, ``torch.inference_mode``, Lightning's
predict loop), gradients are turned back on for the third-party call. pytorch-grad-cam pairs its
per-sample targets with the rows of the model output, so a model returning a tuple (e.g.
``(logits, embedding)``) is wrapped to return one flat tensor per row, which each target
unflattens before reading its score; and since it computes in numpy (which has no bfloat16), a
half or bfloat16 model is explained on a float32 copy.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import BaseAttribution, TargetFn, check_feature_map
from scout_exp.errors import UserError
from scout_exp.modes import frozen_eval


def pgc_class_names() -> list[str]:
    """Names of the CAM classes pytorch-grad-cam exports (subclasses of its ``BaseCAM``)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.base_cam import BaseCAM

    return sorted(
        n
        for n, obj in vars(pytorch_grad_cam).items()
        if inspect.isclass(obj) and issubclass(obj, BaseCAM) and obj is not BaseCAM
    )


@contextmanager
def grad_enabled() -> Iterator[None]:
    """Autograd on, even inside ``torch.no_grad()`` or ``torch.inference_mode()`` (restored on exit)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def _grad_input(x: Tensor) -> Tensor:
    """A normal (not inference-mode) copy of ``x`` that requires grad, so a graph reaches the layer
    even when every parameter before it is frozen."""
    with torch.inference_mode(False):
        return x.detach().clone().requires_grad_(True)


class _FlatOutput(nn.Module):
    """``model`` with its tuple/list output flattened into one (N, D) tensor, rows kept.

    pytorch-grad-cam zips its per-sample targets with the model output, which for a tuple pairs
    them with the tuple's elements; one tensor row per sample restores the pairing.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.shapes: list[torch.Size] | None = None  # per-element row shapes; None: a plain tensor

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if isinstance(out, Tensor):
            self.shapes = None
            return out
        if not isinstance(out, (tuple, list)) or not all(isinstance(o, Tensor) for o in out):
            raise UserError(
                f"pytorch-grad-cam needs a model returning a tensor or a tuple of tensors, got {type(out).__name__}"
            )
        self.shapes = [o.shape[1:] for o in out]
        return torch.cat([o.reshape(o.shape[0], -1).to(out[0].dtype) for o in out], dim=1)

    def unflatten(self, rows: Tensor) -> Any:
        """(N, D) rows back to the model's output structure (a tensor or a tuple)."""
        if self.shapes is None:
            return rows
        sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        parts = torch.split(rows, sizes, dim=1)
        return tuple(p.reshape(rows.shape[0], *s) for p, s in zip(parts, self.shapes))


class _SampleTarget:
    """A pytorch-grad-cam target: ``targets`` evaluated on one output row as if it were sample ``i``.

    pytorch-grad-cam applies sample ``i``'s target to rows of whatever it forwards (the sample
    itself, or ScoreCAM's masked copies of it); ``targets`` must be row-wise (row r belongs to
    sample r mod B), so broadcasting the row to the batch and reading entry ``[i, t]`` scores it
    with sample ``i``'s class ids.
    """

    def __init__(self, targets: TargetFn, flat: _FlatOutput, batch: int, i: int, t: int) -> None:
        self.targets, self.flat, self.batch, self.i, self.t = targets, flat, batch, i, t

    def __call__(self, sample_output: Tensor) -> Tensor:
        rows = sample_output[None].expand(self.batch, *sample_output.shape)
        return _as_2d(self.targets(self.flat.unflatten(rows)))[self.i, self.t]


class PgcAttribution(BaseAttribution):
    """Any pytorch-grad-cam CAM class; maps are min-max normalised at the INPUT size (its output)."""

    uses_engine = False

    def __init__(
        self, model: nn.Module, target_layer: str | nn.Module | None, cam_class: str, **cam_kwargs: Any
    ) -> None:
        super().__init__(model, target_layer)
        names = pgc_class_names()
        if cam_class not in names:
            raise UserError(f"unknown pytorch-grad-cam class {cam_class!r}; choose one of: {', '.join(names)}")
        self.name = f"pgc:{cam_class}"
        self.cam_class = getattr(importlib.import_module("pytorch_grad_cam"), cam_class)
        self.cam_kwargs = cam_kwargs

    def __call__(self, x: Tensor, targets: TargetFn) -> Tensor:
        """(B, T, H, W) pytorch-grad-cam maps, one CAM call per target; parameter grads left as found.

        ``targets`` must be row-wise (see :class:`_SampleTarget`)."""
        model, layer = self._float_model()
        saved = [(p, p.grad) for p in model.parameters()]  # pytorch-grad-cam's zero_grad clears them
        flat = _FlatOutput(model)
        cam = None
        try:
            with frozen_eval(model):
                cam = self.cam_class(flat, [layer], **self.cam_kwargs)
                x_in = _grad_input(x.float() if model is not self.model else x)
                n_targets = _n_targets(targets(_checked_forward(model, layer, self.layer_name, x_in)))
                maps = []
                for t in range(n_targets):
                    pgc_targets = [_SampleTarget(targets, flat, x.shape[0], i, t) for i in range(x.shape[0])]
                    with grad_enabled():
                        maps.append(torch.from_numpy(cam(input_tensor=x_in, targets=pgc_targets)))
        finally:
            if cam is not None:
                cam.activations_and_grads.release()
            for p, grad in saved:
                p.grad = grad
        return torch.stack(maps, dim=1).to(x.device)

    def _float_model(self) -> tuple[nn.Module, nn.Module]:
        """The model and target layer, or a float32 copy of both when the model computes in half/bfloat16."""
        if all(p.dtype == torch.float32 for p in self.model.parameters()):
            return self.model, self.layer
        copied = copy.deepcopy(self.model).float()
        return copied, dict(copied.named_modules())[self.layer_name]


class CaptumAttribution(BaseAttribution):
    """A Captum layer method (``LayerGradCam``, ``LayerGradientXActivation``, ...), summed over channels."""

    uses_engine = False

    def __init__(
        self, model: nn.Module, target_layer: str | nn.Module | None, method: str, **attribute_kwargs: Any
    ) -> None:
        super().__init__(model, target_layer)
        try:
            captum_attr = importlib.import_module("captum.attr")
        except ImportError as err:
            raise UserError(f"captum:{method} needs Captum; install it with `pip install captum`") from err
        cls = getattr(captum_attr, method, None)
        if not (method.startswith("Layer") and inspect.isclass(cls)):
            valid = sorted(
                n for n in dir(captum_attr) if n.startswith("Layer") and inspect.isclass(getattr(captum_attr, n))
            )
            raise UserError(f"unknown Captum layer method {method!r}; choose one of: {', '.join(valid)}")
        self.name = f"captum:{method}"
        self.method_class: Callable[..., Any] = cls  # a Captum Layer* class, built per call
        self.attribute_kwargs = attribute_kwargs

    def __call__(self, x: Tensor, targets: TargetFn) -> Tensor:
        """(B, T, h, w) signed Captum attributions at the layer, one ``attribute`` call per target."""
        x_in = _grad_input(x)
        with frozen_eval(self.model):
            n_targets = _n_targets(targets(_checked_forward(self.model, self.layer, self.layer_name, x_in)))
            method = self.method_class(lambda inp: _as_2d(targets(self.model(inp))), self.layer)
            maps = []
            for t in range(n_targets):
                with grad_enabled():
                    attr = method.attribute(x_in, target=t, **self.attribute_kwargs)
                if isinstance(attr, (tuple, list)):
                    attr = attr[0]
                maps.append(attr.detach().sum(dim=1))
        return torch.stack(maps, dim=1)


def _checked_forward(model: nn.Module, layer: nn.Module, name: str, x: Tensor) -> Any:
    """A no-grad forward that refuses a target layer without a spatial (B, C, H, W) output."""
    handle = layer.register_forward_hook(lambda _m, _i, out: check_feature_map(name, out))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        handle.remove()


def _as_2d(q: Tensor) -> Tensor:
    return q[:, None] if q.dim() == 1 else q


def _n_targets(q: Tensor) -> int:
    return 1 if q.dim() == 1 else q.shape[1]


def create_adapter(
    name: str, model: nn.Module, target_layer: str | nn.Module | None = None, **kwargs: Any
) -> BaseAttribution:
    """Build the adapter for ``pgc:<Class>`` or ``captum:<LayerMethod>``."""
    prefix, _, cls_name = name.partition(":")
    if prefix == "pgc":
        return PgcAttribution(model, target_layer, cls_name, **kwargs)
    return CaptumAttribution(model, target_layer, cls_name, **kwargs)
