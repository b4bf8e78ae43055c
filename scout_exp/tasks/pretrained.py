"""A recogniser from a registered model's own weights: a pickled weight file or a zoo entry."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException

from scout_exp.config import instantiate
from scout_exp.data.transforms import InputSpec
from scout_exp.errors import UserError
from scout_exp.heads import ConfidenceHead
from scout_exp.models import create_model, model_info, resolve_model_config
from scout_exp.models.pickled_weights import load_pickled_weights
from scout_exp.models.state_dicts import read_state_dict
from scout_exp.tasks.recogniser import Recogniser
from scout_exp.zoo import weights_path


def from_weights(model_cfg: dict[str, Any], head: ConfidenceHead) -> Recogniser:
    """A registered model built with its own weights: a weight file (``kwargs.weights``) or a zoo entry.

    The identity count is ``kwargs.num_classes``, else the embedding size (``embedding``; the model
    then outputs descriptors and is its own embedder), else the rows of ``fc.weight`` in the weight file.
    """
    model_cfg = resolve_model_config(model_cfg)
    kwargs = _built(dict(model_cfg.get("kwargs") or {}))
    zoo = model_cfg.get("zoo")
    source = str(kwargs.get("weights") or kwargs.get("weights_dir") or "")
    if zoo and not kwargs.get("weights_dir"):
        source = f"zoo:{zoo} ({weights_path(zoo)})"
    num_classes = kwargs.pop("num_classes", None)
    if num_classes is None:
        num_classes = model_cfg.get("embedding")
    if num_classes is None and kwargs.get("weights"):
        num_classes = _classes_in_weight_file(str(kwargs["weights"]), model_info(model_cfg["name"]).classifier)
    if num_classes is None:
        raise UserError(f"model {model_cfg['name']}: set +model.kwargs.num_classes=<identities of its weights>")
    model = create_model(model_cfg["name"], int(num_classes), **kwargs).eval()
    embedding = model_cfg.get("embedding")
    return Recogniser(
        model,
        head,
        InputSpec.from_config(model_cfg["input"]),
        model_cfg.get("target_layer") or getattr(model, "default_target_layer", None),
        source,
        embedder=model if embedding else None,
        same_person_distance=model_cfg.get("same_person_distance") if embedding else None,
    )


def _built(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every ``{_target_: ...}`` value built by Hydra (e.g. ``model=module``'s ``net``).

    Raises UserError naming the option when its class cannot be found or built.
    """
    for key, value in kwargs.items():
        if isinstance(value, dict) and "_target_" in value:
            try:
                kwargs[key] = instantiate(value)
            except InstantiationException as err:
                reason = str(err).strip().splitlines()[0].split(", set env var HYDRA_FULL_ERROR")[0]
                raise UserError(f"model.kwargs.{key}: {reason} (is its module on PYTHONPATH?)") from None
    return kwargs


def _classes_in_weight_file(path: str, classifier: str = "fc") -> int:
    """Rows of ``<classifier>.weight`` in the weight file: a pickled ``{name: array}`` file (``.pkl``, e.g.
    VGGFace2's 8,631) or a state dict (:func:`scout_exp.models.state_dicts.read_state_dict`)."""
    state = load_pickled_weights(path) if path.endswith((".pkl", ".pickle")) else read_state_dict(path)
    fc = state.get(f"{classifier}.weight")
    if fc is None or fc.ndim != 2:
        raise UserError(f"{path} has no 2-d {classifier}.weight; set +model.kwargs.num_classes=<identities>")
    return int(fc.shape[0])
