"""Eval mode with frozen parameters, restored afterwards: the one way the code switches a network's mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode with no parameter requiring grad; restore both afterwards, even on error."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
