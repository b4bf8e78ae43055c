"""Layer attribution maps: the fast engine, the built-in methods and third-party adapters."""

from scout_exp.attribution import gradcam, gradcampp, gradxact, hirescam, layercam, xgradcam  # noqa: F401
from scout_exp.attribution.base import (
    BaseAttribution,
    LayerGradients,
    layer_gradients,
    list_attributions,
    normalise,
    register_attribution,
    resolve_layer,
    upsample,
)
from scout_exp.attribution.registry import create_attribution

__all__ = [
    "BaseAttribution",
    "LayerGradients",
    "create_attribution",
    "layer_gradients",
    "list_attributions",
    "normalise",
    "register_attribution",
    "resolve_layer",
    "upsample",
]
