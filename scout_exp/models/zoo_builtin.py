"""Imports every built-in backbone module so that its ``@register_model`` runs."""

import scout_exp.models.torchvision_resnets  # noqa: F401
