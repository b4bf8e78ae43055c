"""Imports every built-in backbone module so that its ``@register_model`` runs."""

import scout_exp.models.casianet  # noqa: F401
import scout_exp.models.face_descriptor  # noqa: F401
import scout_exp.models.torchvision_resnets  # noqa: F401
import scout_exp.models.vggface2  # noqa: F401
