"""The confidence-head protocol and its registry (SCOUT Sec. 3.3; docs/method.md, Eq. 11-13).

A confidence head turns the output of the explained network into a per-image score s(x) in which
higher means "more likely correct". SCOUT explains the score with its gradient (the confidence
map a(s)), so a head must be differentiable in the network's output. A head may carry

* a network of its own that computes s(x) from the image (:attr:`ConfidenceHead.network`, with
  the layer :attr:`ConfidenceHead.network_layer` its map is read at), or
* a wrapper (:meth:`ConfidenceHead.forward_model`) whose single forward gives logits and the
  score's inputs together, read back with :meth:`ConfidenceHead.logits`;

and says which training objective (``configs/objective/``) trains what it needs
(:attr:`ConfidenceHead.objective`; None: any classifier). A head attaches to a trained network with
:meth:`ConfidenceHead.attach`. A head is registered under its ``name`` with :func:`register_head`; every
module of this package is imported by :func:`create_head`, so a new head is one file here (or a
plug-in module, ``plugins=[...]``) plus one ``configs/head/<name>.yaml`` (see README, Extending).
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from torch import Tensor, nn

from scout_exp.registry import Registry

#: heads defined in scout_exp.heads, each module imported on the first lookup (package discovery)
_HEADS: Registry[type[ConfidenceHead]] = Registry("confidence head", package="scout_exp.heads")


class ConfidenceHead:
    """Base class of a confidence score s(x) computed from the explained network's output."""

    #: registry name, also the ``configs/head/<name>.yaml`` option
    name: ClassVar[str] = ""
    #: the training objective whose checkpoints hold what this head needs (None: any classifier)
    objective: ClassVar[str | None] = None
    #: other objectives whose checkpoints hold it too (e.g. a post-hoc variant of :attr:`objective`)
    also_trained_by: ClassVar[tuple[str, ...]] = ()
    #: a network x -> s(x) of its own (None: the score is read from the explained network's output)
    network: nn.Module | None = None
    #: the layer of :attr:`network` whose activations its confidence map is computed at
    network_layer: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name:
            raise TypeError(f"{cls.__name__} must set a class attribute `name`")

    def score(self, out: Tensor) -> Tensor:
        """The score s(x), shape (B,), from the output of :meth:`forward_model` (differentiable)."""
        raise NotImplementedError

    def logits(self, out: Tensor) -> Tensor:
        """The class logits (B, C) inside the output of :meth:`forward_model` (default: the output itself)."""
        return out

    def forward_model(self, classifier: nn.Module) -> nn.Module:
        """The network whose one forward gives what :meth:`score` and :meth:`logits` read (default: ``classifier``)."""
        return classifier

    def attach(self, trained: nn.Module, layer: str | None = None) -> None:
        """Take what the head needs from the trained LightningModule ``trained`` (default: nothing).

        ``layer`` is the classifier layer the explanation reads, for heads with a network of their own.
        """

    def needs_training(self) -> str | None:
        """Why this head cannot explain a network without a checkpoint of its objective, or None when it can."""
        if self.objective is None:
            return None
        return f"head={self.name} needs a checkpoint of `train.py objective={self.objective}`"


H = TypeVar("H", bound=type[ConfidenceHead])


def register_head(cls: H) -> H:
    """Class decorator: register a confidence head under its ``name`` (``head=<name>``).

    Built-in heads live in :mod:`scout_exp.heads` (found by discovery); a plug-in module registers
    its own the same way (``plugins=[my_heads.py]``). A head class that is not registered can still
    be passed as an object (``ScoutExplainer(head=MyHead())``). Raises ValueError for a taken name.
    """
    _HEADS.add(cls.name, cls)
    return cls


def list_heads() -> list[str]:
    """Names of the registered confidence heads (built-in and plug-in)."""
    return _HEADS.names()


def create_head(name: str, **options: Any) -> ConfidenceHead:
    """The confidence head ``name`` built with ``options`` (the keys of ``configs/head/<name>.yaml``).

    Raises UserError naming the valid heads for an unknown ``name``.
    """
    return _HEADS.create(name, **options)
