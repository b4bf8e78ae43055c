"""The hardness predictor ``S``: x -> s^hp(x) in (0, 1) (METHOD section 2, ECCV 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from scout_exp.models import create_model
from scout_exp.models.registry import split_classifier

TRUNKS = ("separate", "shared")


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


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One forward of a registry model returning (the flat feature that enters ``fc``, the logits).

    A forward pre-hook on ``fc`` reads the feature, so any registered backbone works unchanged.
    """
    captured: list[Tensor] = []
    handle = model.fc.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return captured[0].flatten(1), logits


class LogitsWithHardness(nn.Module):
    """Classifier plus shared-trunk predictor in ONE forward: x -> [logits | s^hp] of shape (B, C + 1).

    The classifier's children are registered under their own names (``layer4`` stays ``layer4``),
    so layer names valid for the classifier are valid here; the predictor is ``hardness_head``.
    ScoutExplainer reads the output back with :func:`logits_part` and :func:`hardness_part`.
    """

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


def logits_part(out: Tensor) -> Tensor:
    """The class logits of a :class:`LogitsWithHardness` output."""
    return out[:, :-1]


def hardness_part(out: Tensor) -> Tensor:
    """The s^hp column of a :class:`LogitsWithHardness` output."""
    return out[:, -1]
