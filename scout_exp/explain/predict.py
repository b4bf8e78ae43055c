"""Lightning predict loop over pairs: explanations, figures and raw maps for every pair, on every device.

``predict_step`` turns an :class:`Explanation` of a batch into one JSON-ready record per pair and
returns them as a list of :class:`scout_exp.explain.writer.Prediction`, with the pair figure and raw maps
they ask for, which :class:`scout_exp.explain.writer.RecordWriter` writes.
Explanation-quality metrics (``ExplainSettings.metrics``) are scored for the whole batch at once by
:func:`scout_exp.metrics.score_batch` and their per-image fields merged into the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from scout_exp.attribution.base import upsample, zero_degenerate
from scout_exp.errors import UserError
from scout_exp.explain.evaluation import part_iou
from scout_exp.explain.figures import save_pair_figure
from scout_exp.explain.pairs import NO_CLASS, PairDataset
from scout_exp.explain.scout import Explanation, ScoutExplainer, default_classes
from scout_exp.explain.segments import segment_by_area, segment_by_threshold
from scout_exp.explain.writer import Prediction
from scout_exp.io import save_npz
from scout_exp.metrics import BatchContext, Metric, margin_fn, score_batch
from scout_exp.metrics.truth import PartTruth, part_truth
from scout_exp.modes import frozen_eval


@dataclass
class ExplainSettings:
    """Per-run choices: segment rule, outputs, and the FaceParts ground truth when there is one."""

    area_fraction: float = 0.1
    threshold: float | None = None
    save_maps: bool = False
    max_figures: int = 16
    part_names: tuple[str, ...] | None = None
    class_names: list[str] | None = None  # identity names (a gallery), for records and figure labels
    method: str = ""  # attribution method as configured, for figure titles ("": the attribution's name)
    metrics: tuple[Metric, ...] = ()  # built metrics (scout_exp.metrics.build_metrics) to score

    def needs(self, need: str) -> bool:
        """Whether a chosen metric needs ``need`` (``parts``, ``interventions``, ``model``: ``Metric.needs``)."""
        return any(need in m.needs for m in self.metrics)


class ExplainModule(pl.LightningModule):
    """Wraps a :class:`ScoutExplainer`; ``predict_step`` returns one JSON-ready record per pair."""

    def __init__(self, explainer: ScoutExplainer, dataset: PairDataset, settings: ExplainSettings) -> None:
        super().__init__()
        self.explainer = explainer
        self.model = explainer.model  # registered so that Lightning moves it to the device
        self.predictor = explainer.predictor
        self.dataset = dataset
        self.settings = settings

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[Prediction]:
        x1, x2, has_2 = batch["x1"], batch["x2"], batch["has_2"].bool()
        c1, c2 = self._default_classes(x1, x2, has_2, batch["class_1"].clone(), batch["class_2"].clone())
        x = torch.cat([x1, x2[has_2]])
        explained = self.explainer.explain(x, torch.cat([c1, c2[has_2]]), torch.cat([c2, c1[has_2]]))
        size = (int(x.shape[-2]), int(x.shape[-1]))
        indices = [int(i) for i in batch["index"]]
        maps = {
            "class_map": explained.class_map,
            "counter_map": explained.counter_map,
            "confidence_map": explained.confidence_map,
            **explained.variants,
        }
        if not self.settings.save_maps and min(indices) >= self.settings.max_figures:  # no figure, no map file
            maps = {k: maps[k] for k in ("class_map", self.explainer.variant)}
        maps = {k: upsample(v[:, None], size)[:, 0].float().cpu() for k, v in maps.items()}
        # no evidence (issue 12): the explained class's map is float noise (|a| < 1e-9 everywhere)
        degenerate = zero_degenerate(maps["class_map"]).flatten(1).abs().amax(1) == 0
        discriminant = maps[self.explainer.variant]
        if self.settings.threshold is None:
            segments = segment_by_area(discriminant, self.settings.area_fraction)
        else:
            segments = segment_by_threshold(discriminant, self.settings.threshold)
        second = torch.cumsum(has_2.long(), 0) - 1 + x1.shape[0]
        rows = [[b] + ([int(second[b])] if has_2[b] else []) for b in range(x1.shape[0])]
        figures = min(indices) < self.settings.max_figures
        truths = {}
        if self.settings.needs("parts") or (figures and self.dataset.part_data is not None):
            truths = self._truths(x, explained, indices, rows, batch)
        scores = self._scores(x, explained, truths)
        return [
            self._record(index, rows[b], x, explained, maps, segments, scores, degenerate, truths)
            for b, index in enumerate(indices)
        ]

    def _truths(
        self, x: Tensor, e: Explanation, indices: list[int], rows: list[list[int]], batch: dict[str, Any]
    ) -> dict[int, PartTruth]:
        """Part ground truth (``dataset.part_data``) of every image (row of ``x``) against its counter class."""
        part_data = self.dataset.part_data
        if part_data is None:
            raise UserError("part ground truth needs a part-annotated data set (split=val, not images=[...])")
        truths = {}
        for b, (index, rs) in enumerate(zip(indices, rows)):
            pair = self.dataset.pairs[index]
            for side, r in enumerate(rs):
                truths[r] = part_truth(
                    part_data,
                    cast(int, pair.image_1 if side == 0 else pair.image_2),  # a split's pairs hold indices
                    int(e.y_counter[r]),
                    (int(x.shape[-2]), int(x.shape[-1])),
                    self.dataset.preprocess,
                    interventions=self.settings.needs("interventions"),
                    part_map=batch[f"parts_{side + 1}"][b].cpu().numpy(),
                )
        return truths

    def _scores(self, x: Tensor, e: Explanation, truths: dict[int, PartTruth]) -> list[dict[str, Any]]:
        """Per-image metric records (:func:`scout_exp.metrics.score_batch`), in the order of ``x``."""
        metrics = self.settings.metrics
        if not metrics:
            return [{} for _ in range(len(x))]
        if not self.settings.needs("parts"):
            truths = {}
        order = range(len(x))
        return score_batch(
            metrics,
            BatchContext(
                images=x.detach(),
                maps=e.discriminant,
                part_names=self.settings.part_names or (),
                score_fn=margin_fn(lambda z: self.explainer.logits_fn(self.model(z)), e.y_star, e.y_counter),
                part_maps=torch.stack([truths[r].part_map for r in order]) if truths else None,
                discriminative=torch.stack([truths[r].discriminative for r in order]) if truths else None,
                switched=[truths[r].switched for r in order] if truths else None,
                model=self.model,
                explain_fn=lambda z: self.explainer.explain(z, e.y_star, e.y_counter).discriminant,
            ),
        )

    @torch.no_grad()
    def _default_classes(self, x1: Tensor, x2: Tensor, has_2: Tensor, c1: Tensor, c2: Tensor) -> tuple[Tensor, Tensor]:
        """Fill missing class ids (module docstring of :mod:`scout_exp.explain.pairs`) by the rule of
        :func:`scout_exp.explain.scout.default_classes`, x2 (or x1 without it) giving the counter
        class; one no-grad pass."""
        if not bool((c1 == NO_CLASS).any() or (c2 == NO_CLASS).any()):
            return c1, c2
        logits_fn = self.explainer.logits_fn
        with frozen_eval(self.model):
            l1 = logits_fn(self.model(x1))
            l2 = logits_fn(self.model(x2))
        return default_classes(l1, c1, c2, counter_logits=torch.where(has_2[:, None], l2, l1))

    def _title(self, record: dict[str, Any]) -> str:
        """Pair-figure title: the pair, the identities, the method, its layer and the variant."""
        attribution = self.explainer.attribution
        method = self.settings.method or getattr(attribution, "name", type(attribution).__name__)
        layer = getattr(attribution, "layer_name", "?")
        side = record["image_1"]
        a, b = side.get("class_name", side["class"]), side.get("counter_name", side["counter_class"])
        piou = record.get("piou")
        extra = f"; part IoU of the two segments {piou:.2f}" if isinstance(piou, float) and np.isfinite(piou) else ""
        disc = record.get("discriminative_parts")
        extra += f"; they differ in: {', '.join(disc)}" if disc else ""
        return (
            f"{record['pair']}: identity {a} (A) vs {b} (B){extra}\n"
            f"attribution {method} at layer {layer}, discriminant variant {self.explainer.variant}"
        )

    def _record(
        self,
        index: int,
        rows: list[int],
        x: Tensor,
        e: Explanation,
        maps: dict[str, Tensor],
        segments: Tensor,
        scores: list[dict[str, Any]],
        no_evidence: Tensor,
        truths: dict[int, PartTruth],
    ) -> Prediction:
        pair = self.dataset.pairs[index]
        record: dict[str, Any] = {
            "pair": pair.name,
            "images": [str(pair.image_1)] + ([str(pair.image_2)] if pair.image_2 is not None else []),
        }
        disc = pair.meta.get("discriminative_parts")
        if disc is not None:
            record["discriminative_parts"] = list(disc)
        if "k" in pair.meta:  # a look-alike pair: the identities differ in exactly k parts
            record["k"] = pair.meta["k"]
        fig_rows, covered, curves = [], [], []
        for side, row in enumerate(rows):
            ys, yc = int(e.y_star[row]), int(e.y_counter[row])
            degenerate = bool(no_evidence[row])
            seg = np.zeros_like(segments[row].numpy()) if degenerate else segments[row].numpy()
            item: dict[str, Any] = {
                "class": ys,
                "counter_class": yc,
                "prob_class": float(e.probs[row, ys]),
                "prob_counter": float(e.probs[row, yc]),
                "predicted": int(e.probs[row].argmax()),
                "confidence": float(e.confidence[row]),
                "segment_area_px": int(seg.sum()),
                "segment_area_fraction": float(seg.mean()),
                "degenerate_map": degenerate,
            }
            identities = self.settings.class_names
            if identities is not None:
                item["class_name"], item["counter_name"] = identities[ys], identities[yc]
            item.update(scores[row])
            if degenerate and "precision" in item:  # no evidence: no part score (issue 12)
                item["precision"] = item["recall"] = None
                item.pop("pr_precision", None), item.pop("pr_recall", None)
            if "pr_precision" in item:
                curves.append((item.pop("pr_precision"), item.pop("pr_recall")))
            if "parts_in_segment" in item:
                covered.append(set(item["parts_in_segment"]))
            record[f"image_{side + 1}"] = item
            if index >= self.settings.max_figures:
                continue
            fig_rows.append(
                {
                    "image": self.dataset.preprocess.invert(x[row]),
                    "label": f"image {side + 1}: why {item.get('class_name', ys)} not {item.get('counter_name', yc)}"
                    f"\np(A)={item['prob_class']:.2f} p(B)={item['prob_counter']:.2f} s={item['confidence']:.2f}",
                    **{k: v[row].numpy() for k, v in maps.items()},
                    "segment": seg,
                    "segment_label": "degenerate map (|class map| < 1e-9): no evidence"
                    if degenerate
                    else f"top {item['segment_area_fraction']:.0%} of the map",
                    "truth": differing_mask(truths[row]) if row in truths else None,
                    "scores": _score_text(item),
                }
            )
        if len(covered) == 2:
            record["piou"] = part_iou(*covered)
        if curves:
            record["pr_curve"] = {
                "precision": defined_mean([c[0] for c in curves]).tolist(),
                "recall": defined_mean([c[1] for c in curves]).tolist(),
            }
        prediction = Prediction(index, record)
        if index < self.settings.max_figures:
            record["figure"] = f"figures/{pair.name}.png"
            prediction.files[record["figure"]] = partial(
                save_pair_figure, rows=fig_rows, title=self._title(record), variant=self.explainer.variant
            )
        if self.settings.save_maps:
            record["maps"] = f"maps/{pair.name}.npz"
            arrays = {f"{k}_{s + 1}": maps[k][r].numpy() for k in maps for s, r in enumerate(rows)}
            prediction.files[record["maps"]] = partial(save_npz, **arrays)
        return prediction


def differing_mask(truth: PartTruth) -> np.ndarray:
    """(H, W) bool: the pixels of the parts in which the explained identity and the counter one differ."""
    part_map = truth.part_map.numpy()
    disc = truth.discriminative.numpy()
    return (part_map >= 0) & disc[np.clip(part_map, 0, len(disc) - 1)]


def _score_text(item: dict[str, Any]) -> str:
    """The image's part precision/recall for its figure row ("" without part scores)."""
    if "precision" not in item:
        return ""
    p, r = item["precision"], item["recall"]
    if p is None and r is None:
        return "part precision / recall: undefined"
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    return f"part precision {fmt(p)}, recall {fmt(r)}" + (
        f"\n(random map {fmt(item.get('chance_random_precision'))}, {fmt(item.get('chance_random_recall'))})"
        if "chance_random_precision" in item
        else ""
    )


def defined_mean(values: list[Any], length: int | None = None) -> np.ndarray:
    """Mean over the first axis of the defined (finite) entries; NaN where none is defined.

    ``np.nanmean`` gives the same numbers but warns "Mean of empty slice" when a ratio is
    undefined for every pair (e.g. a precision with no pixel in the segment); that case is normal
    here and is reported as null. ``length``: the shape of an entry, for an empty ``values``.
    """
    arr = np.asarray(values, dtype=np.float64) if values else np.full((0,) if length is None else (0, length), np.nan)
    finite = np.isfinite(arr)
    count = finite.sum(axis=0)
    total = np.where(finite, arr, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
