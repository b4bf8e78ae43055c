"""The metric plug-in interface: a :class:`Metric` declares itself in class attributes and scores a batch.

In the spirit of Quantus' ``Metric`` (Hedström et al., JMLR 2023), whose subclasses carry their
metadata as class attributes, but on whole batches of tensors: a metric is one class, registered
with :func:`register_metric`, that says what it needs (part maps, counterfactual interventions, the
model), which ``metric_options`` it reads (its ``Options``, a :class:`MetricOptions` dataclass
checked once when the metric is built), the per-image scores it writes and which direction of each is good, its chance
rows and its figure. Everything else (``score_batch``, the leaderboard's and ``collect``'s ranking
direction, the figures, the CLI's choices and errors) reads these attributes through
:mod:`scout_exp.metrics.catalogue`. The built-in metrics are the modules of
:mod:`scout_exp.metrics.registered`, found without an import line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, is_dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from torch import Tensor

from scout_exp.registry import Registry

if TYPE_CHECKING:
    from scout_exp.metrics.context import BatchContext

#: what a metric can need beyond images, maps and the explained score: part maps and differing parts
#: (a part-annotated data set), part-switched images (counterfactual renders), the model itself
NEEDS = ("parts", "interventions", "model")
#: which value of a score is good
DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class MetricOptions:
    """Base of every metric's options: each field is a flat ``metric_options`` key, with its default.

    ``__post_init__`` runs the ``check`` method of every class of the options' MRO that defines one
    (so option groups shared by several metrics check themselves); a check raises a one-line
    :class:`scout_exp.errors.UserError` naming the option.
    """

    def __post_init__(self) -> None:
        for cls in type(self).__mro__:
            check = cls.__dict__.get("check")
            if check is not None:
                check(self)


@dataclass(frozen=True)
class Curve:
    """A metric's curve, drawn in ``figures/perturbation_curves.png`` with its chance lines.

    The metric's records hold ``<name>_curve`` (the explained score per stage), ``<name>_auc``, and
    for each chance map ``chance_<map>_<name>_auc`` and ``<name>_<map>_curve``. ``label``: legend
    template with ``{value}`` (mean AUC) and ``{chance}`` (the random map's); ``x_option``: the
    option holding the x value of each stage (None: stages evenly spaced over [0, 1]);
    ``style``: matplotlib format of the mean curve.
    """

    label: str
    x_option: str | None = None
    style: str = "-"


class Metric:
    """One explanation-quality metric; subclasses set the class attributes and :meth:`score`.

    ``name``: the ``metrics=[...]`` entry; ``needs``: a subset of :data:`NEEDS`; ``Options``: a
    :class:`MetricOptions` dataclass; ``scores``: score key -> ``"higher"`` | ``"lower"`` (a key
    ending in ``*`` stands for every key with that prefix, e.g. one per model block); ``chance``:
    chance map -> label, the maps whose rows ``chance_<map>_<score>`` the metric can write;
    ``figure``: a :class:`Curve`, ``"part_effects"`` (the scatter of part effect against attribution
    mass) or None; ``fields``: the per-image record entries other than scores and curves that its
    figure reads. :meth:`score` returns one record update per image.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    Options: ClassVar[type[MetricOptions]] = MetricOptions
    scores: ClassVar[Mapping[str, str]] = {}
    chance: ClassVar[Mapping[str, str]] = {}
    figure: ClassVar[Curve | str | None] = None
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: MetricOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def score(self, ctx: BatchContext) -> list[dict[str, object]]:
        """One dict per image of the batch (in order) to merge into that image's JSON-ready record."""
        raise NotImplementedError

    @classmethod
    def direction(cls, key: str) -> str | None:
        """``"higher"`` / ``"lower"`` when ``key`` is one of :attr:`scores` (a pattern included), else None."""
        return match_direction(cls.scores, key)


def match_direction(scores: Mapping[str, str], key: str) -> str | None:
    """The direction ``scores`` (score key or ``prefix*`` pattern -> direction) gives ``key``; None if none."""
    if key in scores:
        return scores[key]
    return next((d for k, d in scores.items() if k.endswith("*") and key.startswith(k[:-1])), None)


M = TypeVar("M", bound=type[Metric])
#: the registered metrics by name; every module of scout_exp.metrics.registered is imported on the first lookup
METRICS: Registry[type[Metric]] = Registry("metric", package="scout_exp.metrics.registered")


def register_metric(cls: M) -> M:
    """Class decorator: register ``cls`` under its ``name``.

    ValueError (the metric's bug, not the user's) for a name registered twice, ``needs`` outside
    :data:`NEEDS`, a direction outside :data:`DIRECTIONS`, ``Options`` not a :class:`MetricOptions`
    dataclass, or no ``score`` method.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric class {cls.__name__} has no name")
    problems = {
        "needs": not set(cls.needs) <= set(NEEDS),
        "scores": not cls.scores or not set(cls.scores.values()) <= set(DIRECTIONS),
        "Options": not (
            isinstance(cls.Options, type) and issubclass(cls.Options, MetricOptions) and is_dataclass(cls.Options)
        ),
        "score": cls.score is Metric.score,
    }
    bad = [k for k, v in problems.items() if v]
    if bad:
        raise ValueError(f"metric {name}: bad {', '.join(bad)} (see scout_exp.metrics.base.Metric)")
    METRICS.add(name, cls)
    return cls


def round_score(v: Tensor | float) -> float | None:
    """A score as JSON: rounded to 6 decimals, None for NaN (undefined)."""
    x = float(v)
    return None if x != x else round(x, 6)


def round_scores(values: list[float]) -> list[float | None]:
    """:func:`round_score` of every entry of a list (e.g. a ``Tensor.tolist()``: no tensor access per entry)."""
    return [None if x != x else round(x, 6) for x in values]


def column_records(columns: Mapping[str, Tensor], b: int) -> list[dict[str, object]]:
    """Per-image records of (B,) score columns, rounded by :func:`round_scores` (one ``tolist`` per column)."""
    values = {key: round_scores(v.tolist()) for key, v in columns.items()}
    return [{key: v[i] for key, v in values.items()} for i in range(b)]
