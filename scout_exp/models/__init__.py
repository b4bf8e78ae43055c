"""Face recognition backbones, registered by name with their facts (input spec, target and identity layers).

Every module of this package is imported on the registry's first lookup, so a backbone module
needs no import line here; the ones below are kept for ``from scout_exp.models import ...``.
"""

from scout_exp.models import casianet, face_descriptor, torchvision_resnets, vggface2  # noqa: F401
from scout_exp.models.registry import (
    ModelInfo,
    classifier_name,
    create_model,
    features_and_logits,
    get_classifier,
    list_models,
    model_info,
    register_model,
    resolve_model_config,
    split_classifier,
)

__all__ = [
    "ModelInfo",
    "classifier_name",
    "create_model",
    "features_and_logits",
    "get_classifier",
    "list_models",
    "model_info",
    "register_model",
    "resolve_model_config",
    "split_classifier",
]
