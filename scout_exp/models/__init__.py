"""Face recognition backbones, registered by name."""

from scout_exp.models.registry import create_model, features_and_logits, list_models, register_model, split_classifier

__all__ = ["create_model", "features_and_logits", "list_models", "register_model", "split_classifier"]
