"""SCOUT explanations: class, counter-class and confidence maps from one engine or black-box pass (docs/method.md section 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from scout_exp.attribution.base import BaseAttribution, layer_gradients, resolve_layer, upsample
from scout_exp.attribution.registry import create_attribution
from scout_exp.errors import UserError
from scout_exp.explain.confidence import confidence_map
from scout_exp.explain.discriminant import VARIANTS, discriminant_map
from scout_exp.explain.pairs import NO_CLASS
from scout_exp.heads import ConfidenceHead, create_head
from scout_exp.modes import frozen_eval


@dataclass
class Explanation:
    """A batch of SCOUT explanations; maps are raw, at the attribution's resolution."""

    y_star: Tensor  # (B,) explained class
    y_counter: Tensor  # (B,) counter class
    probs: Tensor  # (B, C) softmax probabilities
    confidence: Tensor  # (B,) confidence score s(x)
    class_map: Tensor  # (B, h, w) a(h_y*)
    counter_map: Tensor  # (B, h, w) a(h_yc)
    confidence_map: Tensor  # (B, h, w) a(s)
    discriminant: Tensor  # (B, h, w) the chosen variant
    variants: dict[str, Tensor] = field(default_factory=dict)  # "a", "a_abar", "a_abar_as"


class ScoutExplainer:
    """Discriminant (Eq. 6) and counterfactual (Eq. 5) explanations of a classifier.

    ``head`` is the confidence head (:mod:`scout_exp.heads`, or its registry name) whose score
    s(x) the confidence map explains. With an engine attribution and a head that reads s(x) from
    the network's output, the class, counter-class and confidence maps come from ONE
    :func:`layer_gradients` call (T=3). Class maps use the logit, as the official code does. A head
    with a network of its own (a separate-trunk hardness predictor) costs one extra pass on its own
    layer; its map is resized to the class maps' size. A black-box method (``reads_layer`` False,
    :mod:`scout_exp.attribution.blackbox`) gets the three maps from ONE call with T=3 targets (the
    two logits and s(x)), at the input size. Adapter attributions (``pgc:``/``captum:``) run their
    own passes, and the confidence map comes from the engine at their layer; ``pgc:`` class maps
    come back min-max normalised at the input size, and the confidence map is resized to match.
    ``attribution_options`` reach the attribution method.
    """

    def __init__(
        self,
        model: nn.Module,
        attribution: str | BaseAttribution = "gradxact",
        target_layer: str | nn.Module | None = None,
        head: str | ConfidenceHead = "softmax",
        variant: str = "a_abar_as",
        attribution_options: dict[str, Any] | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise UserError(f"unknown discriminant variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
        self.head = create_head(head) if isinstance(head, str) else head
        self.model = self.head.forward_model(model)
        self.attribution = (
            create_attribution(attribution, self.model, target_layer, **(attribution_options or {}))
            if isinstance(attribution, str)
            else attribution
        )
        self.predictor = self.head.network
        self.predictor_layer = (
            resolve_layer(self.predictor, self.head.network_layer)[1] if self.predictor is not None else None
        )
        self.logits_fn: Callable[[Tensor], Tensor] = self.head.logits
        self.variant = variant

    def explain(
        self, x: Tensor, y_star: Tensor | int | None = None, y_counter: Tensor | int | None = None
    ) -> Explanation:
        """Explain why each image is ``y_star`` (default: argmax), not ``y_counter`` (default: runner-up)."""
        chosen: dict[str, Tensor] = {}

        def class_targets(out: Tensor) -> Tensor:
            logits = self.logits_fn(out)
            ys, yc = default_classes(logits.detach(), y_star, y_counter)
            chosen.update(y_star=ys, y_counter=yc, logits=logits.detach())
            rows = torch.arange(logits.shape[0], device=logits.device)
            return torch.stack([logits[rows, ys], logits[rows, yc]], dim=1)

        def all_targets(out: Tensor) -> Tensor:
            q = class_targets(out)
            return torch.cat([q, self._score(out)[:, None]], dim=1)

        shared_conf = self.predictor is None
        if self.attribution.uses_engine:
            lg = layer_gradients(self.model, self.attribution.layer, x, all_targets if shared_conf else class_targets)
            class_maps = self.attribution.combine(lg.activations, lg.gradients[:, :2])
            if shared_conf:
                conf_map = confidence_map(lg.activations, lg.gradients[:, 2:3])[:, 0]
                conf = lg.targets[:, 2]
        elif not self.attribution.reads_layer:
            maps = self.attribution(x, self._fixed_class_targets(x, y_star, y_counter, chosen, shared_conf))
            class_maps = maps[:, :2]
            if shared_conf:
                conf_map, conf = maps[:, 2], chosen["confidence"]
        else:
            class_maps = self.attribution(x, self._fixed_class_targets(x, y_star, y_counter, chosen))
            if shared_conf:
                lg = layer_gradients(self.model, self.attribution.layer, x, self._score)
                conf_map = confidence_map(lg.activations, lg.gradients)[:, 0]
                conf = lg.targets[:, 0]
        if self.predictor is not None:  # not shared_conf: a separate confidence predictor
            lg = layer_gradients(self.predictor, self.predictor_layer, x, self.head.score)
            conf_map = confidence_map(lg.activations, lg.gradients)[:, 0]
            conf = lg.targets[:, 0]
        if conf_map.shape[-2:] != class_maps.shape[-2:]:
            conf_map = upsample(conf_map, (class_maps.shape[-2], class_maps.shape[-1]))
        class_map, counter_map = class_maps[:, 0], class_maps[:, 1]
        variants = {v: discriminant_map(class_map, counter_map, conf_map, v) for v in VARIANTS}
        return Explanation(
            y_star=chosen["y_star"],
            y_counter=chosen["y_counter"],
            probs=chosen["logits"].softmax(dim=1),
            confidence=conf,
            class_map=class_map,
            counter_map=counter_map,
            confidence_map=conf_map,
            discriminant=variants[self.variant],
            variants=variants,
        )

    def counterfactual(
        self,
        x: Tensor,
        x_counter: Tensor,
        y_star: Tensor | int | None = None,
        y_counter: Tensor | int | None = None,
    ) -> tuple[Explanation, Explanation]:
        """The pair ``(D(x, y*, y^c), D(x^c, y^c, y*))`` of Eq. 5.

        Defaults: ``y*`` is the prediction on ``x``; ``y^c`` the best class other than ``y*`` on ``x^c``.
        """
        if x.shape[0] != x_counter.shape[0]:
            raise UserError(f"x and x_counter must hold as many images, got {x.shape[0]} and {x_counter.shape[0]}")
        ys: Tensor | int
        yc: Tensor | int
        if y_star is None or y_counter is None:
            with torch.no_grad(), frozen_eval(self.model):
                logits = self.logits_fn(self.model(x))
                logits_c = self.logits_fn(self.model(x_counter))
            ys, yc = default_classes(logits, y_star, y_counter, counter_logits=logits_c)
        else:
            ys, yc = y_star, y_counter
        return self.explain(x, ys, yc), self.explain(x_counter, yc, ys)

    def _fixed_class_targets(
        self,
        x: Tensor,
        y_star: Tensor | int | None,
        y_counter: Tensor | int | None,
        chosen: dict[str, Tensor],
        with_score: bool = False,
    ) -> Callable[[Tensor], Tensor]:
        """(N, 2) class targets (logits of y*, y^c) with the ids resolved once on ``x``; with
        ``with_score`` a third column, the confidence score s. For methods that forward other batches.

        Adapters and black-box methods forward other batches than ``x`` (ScoreCAM's and RISE's
        masked copies, Captum's ``n_steps`` block-wise expansions); the returned targets read row
        ``r`` with the ids of sample ``r mod B`` and so stay correct on any such batch. ``chosen``
        receives the ids and the logits of ``x`` (and, ``with_score``, s(x) as ``confidence``).
        """
        with torch.no_grad(), frozen_eval(self.model):
            out = self.model(x)
            logits = self.logits_fn(out)
            if with_score:
                chosen["confidence"] = self._score(out)
        ys, yc = default_classes(logits, y_star, y_counter)
        chosen.update(y_star=ys, y_counter=yc, logits=logits)
        ids = torch.stack([ys, yc], dim=1)

        def targets(out: Tensor) -> Tensor:
            rows = self.logits_fn(out)
            sample = torch.arange(rows.shape[0], device=rows.device) % ids.shape[0]
            q = rows.gather(1, ids.to(rows.device)[sample])
            return torch.cat([q, self._score(out)[:, None].to(q.dtype)], dim=1) if with_score else q

        return targets

    def _score(self, out: Tensor) -> Tensor:
        """The confidence score s(x) (B,) of the head, from the model output."""
        return self.head.score(out)


def default_classes(
    logits: Tensor,
    y_star: Tensor | int | None,
    y_counter: Tensor | int | None,
    counter_logits: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The one rule for the explained and counter classes, (B,) long tensors each.

    A missing id (None, or a ``NO_CLASS`` entry) is filled per image: ``y*`` is the argmax of
    ``logits`` (B, C), or, where ``y^c`` is given, the best class other than ``y^c``; ``y^c`` is
    the best class other than ``y*`` on ``counter_logits`` (the counter image's, Eq. 5) or,
    without them, on ``logits`` (the runner-up). Given ids are kept. Raises UserError for ids out
    of range, or, without ``counter_logits``, ``y* == y^c``.
    """
    source = logits if counter_logits is None else counter_logits
    ys = _class_ids(y_star, logits, "y_star")
    yc = _class_ids(y_counter, source, "y_counter")
    if ys is None or bool((ys == NO_CLASS).any()):
        guess = logits.argmax(dim=1)
        if yc is not None:
            guess = torch.where(yc == NO_CLASS, guess, _best_other(logits, yc.clamp(min=0)))
        ys = guess if ys is None else torch.where(ys == NO_CLASS, guess, ys)
    if yc is None or bool((yc == NO_CLASS).any()):
        other = _best_other(source, ys)
        yc = other if yc is None else torch.where(yc == NO_CLASS, other, yc)
    if counter_logits is None and bool((ys == yc).any()):
        raise UserError("the counter class must differ from the explained class for every image")
    return ys, yc


def _class_ids(y: Tensor | int | None, logits: Tensor, what: str) -> Tensor | None:
    """Class ids as a (B,) long tensor on the logits' device (``NO_CLASS`` kept); UserError when out of range."""
    if y is None:
        return None
    batch, n_classes = logits.shape
    ids = torch.as_tensor(y, dtype=torch.long, device=logits.device).reshape(-1)
    if ids.numel() == 1:
        ids = ids.expand(batch)
    if ids.numel() != batch:
        raise UserError(f"{what} must hold one class id per image ({batch}), got {ids.numel()}")
    if bool(((ids < NO_CLASS) | (ids >= n_classes)).any()):
        raise UserError(f"{what} holds a class id outside [0, {n_classes - 1}]")
    return ids


def _best_other(logits: Tensor, exclude: Tensor) -> Tensor:
    """The best class other than ``exclude`` per row (the runner-up when ``exclude`` is the argmax)."""
    if logits.shape[1] < 2:
        raise UserError("a counter class needs a classifier with at least 2 classes")
    masked = logits.clone()
    masked.scatter_(1, exclude[:, None], float("-inf"))
    return masked.argmax(dim=1)
