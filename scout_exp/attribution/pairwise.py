"""Pair attribution: methods that explain a verification pair from both embeddings, not from one score.

Every other method maps a scalar score, ``method(x, targets)``; ``mode=verify`` gives it the
cosine ``q`` and ``-q``. A pair method needs more than the cosine: FGGB
(:mod:`scout_exp.attribution.fggb`) weighs every dimension of the embedding by how much the two
descriptors agree in it. :class:`scout_exp.explain.verification.VerificationExplainer` therefore
hands a pair method the partner embeddings (:meth:`PairAttribution.explain_pair`) and takes its
similar and different evidence as they come. ``mode=scout`` has no pair to give, so calling such
a method like the others is a one-line :class:`UserError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from scout_exp.attribution.base import BaseAttribution, TargetFn
from scout_exp.errors import UserError


class PairAttribution(BaseAttribution):
    """A verification-only method: :meth:`explain_pair` maps images against their partners' embeddings.

    It works at the input and reads no layer: ``target_layer`` must be None (UserError otherwise).
    ``model`` is the embedder, an ``nn.Module`` or any callable (B, C, H, W) -> (B, D).
    """

    uses_engine = False
    reads_layer = False
    # BaseAttribution types these for a layer method; a pair method takes any callable and reads no layer
    model: Callable[[Tensor], Any]  # type: ignore[assignment]  # a Module or a plain function
    layer_name: None  # type: ignore[assignment]  # no layer
    layer: None  # type: ignore[assignment]  # no layer

    def __init__(self, model: Callable[[Tensor], Any], target_layer: str | nn.Module | None = None) -> None:
        if target_layer is not None:
            layer = target_layer if isinstance(target_layer, str) else type(target_layer).__name__
            raise UserError(
                f"attribution={self.name} works at the input image and reads no layer; drop attribution.layer={layer}"
            )
        self.model = model
        self.layer_name = None
        self.layer = None

    def describe(self) -> str:
        """The method in words, for figure titles."""
        return self.name

    def explain_pair(self, x: Tensor, partner: Tensor) -> Tensor:
        """Evidence of every image against its partner: (N, C, H, W) images and (N, D) unit-norm
        partner embeddings (row n is the other image of image n's pair) -> (N, 2, H, W)
        non-negative maps, channel 0 the similar evidence, channel 1 the different evidence."""
        raise NotImplementedError(f"{type(self).__name__} must implement explain_pair()")

    def __call__(self, x: Tensor, targets: TargetFn) -> Tensor:
        """Refused: a pair method has no map of a single score (UserError, one line)."""
        raise UserError(
            f"attribution={self.name} explains face verification pairs only (mode=verify): it needs both "
            "embeddings of a pair, not one score"
        )
