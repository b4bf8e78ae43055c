"""Face recognition backbones, registered by name (importing this package registers the built-in ones)."""

from scout_exp.models import casianet, face_descriptor, torchvision_resnets, vggface2  # noqa: F401
from scout_exp.models.registry import create_model, features_and_logits, list_models, register_model, split_classifier

__all__ = ["create_model", "features_and_logits", "list_models", "register_model", "split_classifier"]
