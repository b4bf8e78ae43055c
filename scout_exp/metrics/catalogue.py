"""What the metric registry says, for everything that used to list metrics by hand.

The CLI's choices and errors (:func:`check_metrics`, :func:`build_metrics`), which record keys are
scores and which way each is good (:func:`is_score`, :func:`score_direction`: the leaderboard and
``collect``), the chance maps' labels and the figures' inputs, all derived from the class
attributes of the registered :class:`scout_exp.metrics.base.Metric` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from scout_exp.errors import UserError
from scout_exp.metrics.base import METRICS, Curve, Metric, match_direction


def metric_names() -> list[str]:
    """The registered metrics' names, sorted (the ``metrics=[...]`` choices)."""
    return METRICS.names()


def metric_classes() -> list[type[Metric]]:
    """The registered metric classes in the order of :func:`metric_names`."""
    return [METRICS[name] for name in metric_names()]


def check_metrics(names: Sequence[str], has_parts: bool, data: str) -> list[str]:
    """``names`` without repeats, in order; one-line UserError for an unknown metric (listing the
    choices) or one that needs part annotations when ``data`` (its description) has none."""
    for name in names:
        if "parts" in METRICS.lookup(name).needs and not has_parts:
            without = [c.name for c in metric_classes() if "parts" not in c.needs]
            raise UserError(
                f"metric {name!r} needs part annotations and {data} has none; use a part-annotated data set, "
                f"e.g. FaceParts (split=...; docs/data.md), or metrics without parts ({', '.join(without)})"
            )
    return list(dict.fromkeys(names))


def option_names() -> list[str]:
    """Every ``metric_options`` key some registered metric reads (its ``Options`` fields), sorted."""
    return sorted({f.name for cls in metric_classes() for f in fields(cls.Options)})


def build_metrics(names: Sequence[str], options: Mapping[str, Any], **fixed: Any) -> list[Metric]:
    """The metrics ``names`` (in order, without repeats), each with its ``Options`` from the flat
    ``options`` (``metric_options`` of the config) and ``fixed`` values (e.g. ``area_fraction`` from
    ``segment``), checked once here.

    UserError (one line): an unknown metric, an option no registered metric reads (listing the valid
    keys, ``fixed`` ones excluded), or a value an option's check refuses.
    """
    valid = [k for k in option_names() if k not in fixed]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(f"unknown metric_options {', '.join(unknown)}; choose from: {', '.join(valid)}")
    given = {**options, **fixed}
    built = []
    for name in dict.fromkeys(names):
        cls = METRICS.lookup(name)
        keys = {f.name for f in fields(cls.Options)}
        built.append(cls(cls.Options(**{k: v for k, v in given.items() if k in keys})))
    return built


def chance_labels(key: str | None = None) -> dict[str, str]:
    """Chance map -> label (e.g. ``random`` -> ``random map``): those of the metric that owns score
    ``key``, or of every registered metric (first label wins) when ``key`` is None or nobody's."""
    owner = metric_of(key) if key is not None else None
    if owner is not None:
        return dict(owner.chance)
    labels: dict[str, str] = {}
    for cls in metric_classes():
        for k, label in cls.chance.items():
            labels.setdefault(k, label)
    return labels


def _base_score(key: str) -> str:
    """``key`` without a ``chance_<map>_`` prefix of a registered chance map."""
    if key.startswith("chance_"):
        for m in chance_labels():
            if key.startswith(f"chance_{m}_"):
                return key[len(f"chance_{m}_") :]
    return key


def metric_of(key: str) -> type[Metric] | None:
    """The registered metric that writes score ``key`` (a chance row ``chance_<map>_<score>`` included)."""
    score = _base_score(key)
    return next((cls for cls in metric_classes() if cls.direction(score)), None)


def score_direction(key: str, declared: Mapping[str, str] | None = None) -> str | None:
    """``"higher"`` or ``"lower"`` (is better) for a registered score or its chance row; else the
    direction ``declared`` gives it (a run's ``score_directions``: :func:`score_directions`, e.g. of
    a plug-in metric this process did not import); None otherwise."""
    owner = metric_of(key)
    if owner is not None:
        return owner.direction(_base_score(key))
    return match_direction(declared, _base_score(key)) if declared else None


def score_directions(metrics: Sequence[Metric]) -> dict[str, str]:
    """Score key (or pattern) -> direction of the ``metrics``: what a run's ``summary.json`` records,
    so that ranking its scores needs no import of the metrics' modules."""
    return {key: d for m in metrics for key, d in m.scores.items()}


def is_score(key: str) -> bool:
    """Whether ``key`` of a per-image record is a scalar metric score or a chance row of one."""
    return score_direction(key) is not None


def is_figure_field(key: str) -> bool:
    """Whether ``key`` of a per-image record is read by a metric figure: a :class:`Curve` metric's
    ``<name>_curve`` / ``<name>_<map>_curve``, or one of a metric's ``fields``."""
    for cls in metric_classes():
        if key in cls.fields:
            return True
        if isinstance(cls.figure, Curve) and key in (
            f"{cls.name}_curve",
            *(f"{cls.name}_{m}_curve" for m in cls.chance),
        ):
            return True
    return False


def metrics_need(names: Sequence[str], need: str) -> bool:
    """Whether a metric of ``names`` has ``need`` in its ``needs`` (UserError for an unknown name)."""
    return any(need in METRICS.lookup(name).needs for name in names)
