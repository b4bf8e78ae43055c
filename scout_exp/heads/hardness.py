"""Easiness score ``s^e(x) = 1 - s^hp(x)`` of a hardness predictor (SCOUT Eq. 13; Wang & Vasconcelos,
"Towards realistic predictors", ECCV 2018; docs/method.md Sec. 2).

The predictor ``S`` is the head's network: an MLP on the classifier's pooled feature (``shared``
trunk) or on a backbone of its own (``separate``). It is trained by ``objective=hardness``
(:mod:`scout_exp.hardness.module`), whose checkpoints this head attaches to.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.heads.base import ConfidenceHead, register_head
from scout_exp.models import create_model, features_and_logits, split_classifier

TRUNKS = ("separate", "shared")


def easiness_score(hardness: Tensor) -> Tensor:
    """``s^e(x) = 1 - s^hp(x)`` (Eq. 13): (B,) or (B, 1) predictor outputs -> (B,)."""
    return 1 - hardness.reshape(hardness.shape[0])


class HardnessPredictor(nn.Module):
    """MLP head on a feature vector, with or without a trunk of its own, ending in a sigmoid.

    ``trunk`` given (``separate``): a copy of the classifier's backbone with ``fc`` removed, so
    ``forward`` takes images. ``trunk`` None (``shared``): ``forward`` takes the classifier's
    flat features. The head is FC(feat -> hidden) then BN-ReLU-Dropout-FC(hidden -> 1): the first
    FC stands in for the 1000-way output layer that the reference code's backbone keeps.
    """

    def __init__(
        self, feature_dim: int, hidden: int = 128, dropout: float = 0.5, trunk: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Sequential(
            nn.Linear(feature_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def logit(self, inputs: Tensor) -> Tensor:
        """The pre-sigmoid hardness ``z`` (B,) of images (separate trunk) or features (shared)."""
        features = self.trunk(inputs) if self.trunk is not None else inputs
        return self.head(features.flatten(1))[:, 0]

    def forward(self, inputs: Tensor) -> Tensor:
        """``s^hp = sigmoid(z)`` (B,) in (0, 1): the predicted probability that the classifier errs."""
        return torch.sigmoid(self.logit(inputs))


def build_trunk(model_name: str, num_classes: int, model_kwargs: dict | None = None) -> tuple[nn.Module, int]:
    """A fresh registry backbone with its identity layer removed, and its feature size."""
    trunk, fc = split_classifier(create_model(model_name, num_classes=num_classes, **(model_kwargs or {})))
    return trunk, fc.in_features


class LogitsWithHardness(nn.Module):
    """Classifier plus shared-trunk predictor in ONE forward: x -> [logits | s^hp] of shape (B, C + 1).

    The classifier's children are registered under their own names (``layer4`` stays ``layer4``),
    so layer names valid for the classifier are valid here; the predictor is ``hardness_head``.
    """

    _classifier: nn.Module  # set with object.__setattr__ in __init__, not registered as a submodule

    def __init__(self, model: nn.Module, predictor: HardnessPredictor) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.hardness_head = predictor
        object.__setattr__(self, "_classifier", model)  # a plain reference: its children are registered above

    def train(self, mode: bool = True) -> LogitsWithHardness:
        super().train(mode)
        self._classifier.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        features, logits = features_and_logits(self._classifier, x)
        return torch.cat([logits, self.hardness_head(features)[:, None].to(logits.dtype)], dim=1)


@register_head
class HardnessHead(ConfidenceHead):
    """s^e = 1 - s^hp from a trained hardness predictor (``objective=hardness`` checkpoints).

    Shared trunk: the explained network becomes :class:`LogitsWithHardness`, so ONE forward gives
    logits and s^hp and the engine's single backward yields class and confidence maps. Separate
    trunk: the predictor is the head's :attr:`network`, explained at the layer named like the
    classifier's.
    """

    name = "hardness"
    objective = "hardness"
    also_trained_by = ("hardness_posthoc",)

    def __init__(self) -> None:
        self.predictor: HardnessPredictor | None = None

    def attach(self, trained: nn.Module, layer: str | None = None) -> None:
        predictor = getattr(trained, "predictor", None)
        if not isinstance(predictor, HardnessPredictor):
            raise UserError(
                f"{self.needs_training()}; this checkpoint holds a plain classifier "
                "(use head=softmax, certainty, max_logit or margin with it)"
            )
        self.predictor = predictor
        if predictor.trunk is not None:
            self.network = predictor
            self.network_layer = f"trunk.{layer}" if layer else None

    def forward_model(self, classifier: nn.Module) -> nn.Module:
        if self.predictor is None:
            raise UserError(f"{self.needs_training()}; none is attached")
        return classifier if self.network is not None else LogitsWithHardness(classifier, self.predictor)

    def logits(self, out: Tensor) -> Tensor:
        return out if self.network is not None else out[:, :-1]

    def score(self, out: Tensor) -> Tensor:
        """Shared trunk: ``1 - out[:, -1]``; separate trunk: ``out`` is the predictor's s^hp."""
        return easiness_score(out if self.network is not None else out[:, -1])
