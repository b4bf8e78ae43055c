"""What an explain run explains: a network in eval mode with its confidence head, input spec and
attribution layer (:func:`scout_exp.tasks.recogniser_loader.load_recogniser` builds it).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from scout_exp.data.transforms import InputSpec
from scout_exp.heads import ConfidenceHead


@dataclass
class Recogniser:
    """A network in eval mode with what explaining it needs."""

    model: nn.Module
    head: ConfidenceHead
    input_spec: InputSpec
    target_layer: str | None
    source: str
    class_names: list[str] | None = None  # gallery identities, one per class
    layer_prefix: str = ""  # where the configured network sits inside ``model`` ("embedder." in a gallery)
    embedder: nn.Module | None = None  # image -> descriptor, for galleries and mode=verify
    same_person_distance: float | None = None  # descriptor distance below which a pair is one person
    network: str | None = None  # registered model name a checkpoint was trained with
    unseen_identities: list[int] | None = None  # FaceParts identities a margin-trained embedder never trained on

    def layer(self, name: str | None) -> str | None:
        """The attribution layer: ``name`` (a layer of the configured network) or the model's default."""
        name = name or self.target_layer
        if name is None or not self.layer_prefix or name.startswith(self.layer_prefix):
            return name
        return self.layer_prefix + name
