"""Attribution maps: the fast layer engine, the built-in layer and black-box methods, third-party adapters."""

from scout_exp.attribution import (  # noqa: F401
    corrrise,
    fggb,
    gradcam,
    gradcampp,
    gradxact,
    hirescam,
    layercam,
    occlusion,
    rise,
    xgradcam,
)
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
from scout_exp.attribution.blackbox import BlackBoxAttribution
from scout_exp.attribution.registry import attribution_class, create_attribution

__all__ = [
    "BaseAttribution",
    "BlackBoxAttribution",
    "LayerGradients",
    "attribution_class",
    "create_attribution",
    "layer_gradients",
    "list_attributions",
    "normalise",
    "register_attribution",
    "resolve_layer",
    "upsample",
]
