"""The ``explain`` task: load the recogniser, choose the pairs, run the predict loop, write the record."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from scout_exp.attribution import attribution_class
from scout_exp.attribution.pairwise import PairAttribution
from scout_exp.config import instantiate, instantiate_group, output_dir, save_resolved_config, to_container
from scout_exp.data.faceparts import FaceParts
from scout_exp.data.faceparts_triplets import TripletDataset, make_triplets
from scout_exp.data.part_annotated import PartAnnotated, require_counterfactuals
from scout_exp.data.transforms import Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.figures import pr_chance, save_pr_figure
from scout_exp.explain.metric_figures import save_metric_figures
from scout_exp.explain.pairs import (
    Pair,
    PairDataset,
    check_classes,
    pairs_from_csv,
    pairs_from_images,
    split_pairs,
)
from scout_exp.explain.predict import ExplainModule, ExplainSettings
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.explain.segments import AREA_FRACTIONS
from scout_exp.explain.verification import VerificationExplainer
from scout_exp.explain.verify_benchmark import triplet_summary
from scout_exp.explain.verify_loop import VerifyModule
from scout_exp.explain.writer import PRMeans, RecordWriter, iter_records, remove_record_files, write_explanations
from scout_exp.io import save_json
from scout_exp.manifest import run_manifest, stage
from scout_exp.metrics import build_metrics, check_metrics, summarise
from scout_exp.metrics.catalogue import is_figure_field, is_score, metrics_need, score_directions
from scout_exp.mirror import mirror_run
from scout_exp.models import get_classifier
from scout_exp.report import write_run_report
from scout_exp.tasks.recogniser import Recogniser
from scout_exp.tasks.recogniser_loader import load_recogniser
from scout_exp.training.progress import progress_bar

log = logging.getLogger(__name__)
#: scout: SCOUT counterfactual explanations of identities; verify: similarity maps of (probe, reference) pairs
MODES = ("scout", "verify")


def explain(cfg: DictConfig) -> dict[str, Any]:
    """Explain the configured pairs; write ``explanations.json``, figures and (optionally) raw maps.

    Records, figures and maps are written as batches finish (:mod:`scout_exp.explain.writer`), so
    memory stays flat in the number of pairs; ``mode=verify`` runs through the same loop.
    """
    start = time.perf_counter()
    out = output_dir()
    save_resolved_config(cfg, out / "config_resolved.yaml")
    torch.manual_seed(cfg.seed)
    mode = cfg.get("mode", "scout")
    _check_mode(cfg, mode)
    if cfg.segment.threshold is None and not 0 < cfg.segment.area_fraction <= 1:
        raise UserError(f"segment.area_fraction must be in (0, 1], got {cfg.segment.area_fraction} (10% is 0.1)")
    with stage("load"):
        recogniser = load_recogniser(cfg)
    preprocess = Preprocess(recogniser.input_spec)
    module: ExplainModule | VerifyModule
    dataset: PairDataset | TripletDataset
    if mode == "verify" and cfg.get("pairs") == "triplets":
        dataset = triplet_dataset(cfg, recogniser, preprocess)
        module, summary = _verify_module(cfg, recogniser, dataset, out)
    else:
        faceparts, pairs = select_pairs(cfg)
        dataset = PairDataset(pairs, preprocess, part_data=faceparts, align=cfg.get("align"))
        if mode == "verify":
            module, summary = _verify_module(cfg, recogniser, dataset, out)
        else:
            module, summary = _scout_module(cfg, recogniser, dataset, faceparts, out)
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[progress_bar(predict_stage=f"explain ({mode})"), RecordWriter(out)],
        precision="32-true",
        inference_mode=False,
        enable_checkpointing=False,
        max_epochs=None,
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=False)
    with stage("explain"):
        trainer.predict(module, loader, return_predictions=False)
    if not trainer.is_global_zero:
        return {}
    if cfg.get("align"):
        summary["align"] = cfg.align
    summary, figures, table, curve, items = _summarise(summary, iter_records(out), recogniser, mode)
    at = f" at {summary['layer']}" if summary.get("layer") else ""  # a black-box method reads no layer
    described = f"{cfg.attribution.method}{at}, variant {cfg.get('variant')}"
    figures += save_metric_figures(
        out / "figures",
        [{"image_1": i} for i in items],
        module.settings.metrics if isinstance(module, ExplainModule) else (),
        title=f"{described}; {summary['pairs']} pairs",
    )
    if curve:
        save_pr_figure(
            out / "figures" / "pr_curve.png",
            curve["area_fraction"],
            np.array(curve["precision"]),
            np.array(curve["recall"]),
            f"{described} ({summary['pairs']} pairs)",
            chance=pr_chance(summary),
            area_fraction=cfg.segment.area_fraction,  # where the chance rows are measured
        )
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    header: dict[str, Any] = {"summary": summary, "figures": figures + (["figures/pr_curve.png"] if curve else [])}
    if mode == "scout":
        header["pr_curve"] = curve
    write_explanations(out / "explanations.json", header, iter_records(out))
    report = write_run_report(out, header, iter_records(out))
    remove_record_files(out)
    save_json(summary, out / "summary.json")
    key = "verification" if mode == "verify" else "explanations"
    images = {key: [str(out / f) for f in figures]}
    if curve:
        images["pr_curve"] = [str(out / "figures" / "pr_curve.png")]
    table_rows = ("scores", SCORE_COLUMNS, table) if table else None
    config = {**to_container(cfg), "manifest": run_manifest()}
    mirror_run(loggers, summary, config, images, table_rows, html={"report": str(report)})
    log.info("explanations: %s; report: %s", out / "explanations.json", report)
    return summary


def _check_mode(cfg: DictConfig, mode: str) -> None:
    """UserError for an unknown mode, and for a verification-only method (FGGB) outside ``mode=verify``."""
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    method = cfg.attribution.method
    if mode != "verify" and issubclass(attribution_class(method), PairAttribution):
        raise UserError(
            f"attribution={method} explains face verification pairs only: use mode=verify (it needs both "
            "embeddings of a pair, not one score)"
        )


def _scout_module(
    cfg: DictConfig, recogniser: Recogniser, dataset: PairDataset, faceparts: Any, out: Path
) -> tuple[ExplainModule, dict[str, Any]]:
    """The SCOUT predict module and the summary's fixed fields."""
    check_classes(dataset.pairs, get_classifier(recogniser.model).out_features)
    explainer = ScoutExplainer(
        recogniser.model,
        attribution=cfg.attribution.method,
        target_layer=_layer(cfg, recogniser.layer(cfg.attribution.layer)),
        head=recogniser.head,
        variant=cfg.variant,
        attribution_options=to_container(cfg.attribution.kwargs) if cfg.attribution.get("kwargs") else {},
    )
    settings = ExplainSettings(
        area_fraction=cfg.segment.area_fraction,
        threshold=cfg.segment.threshold,
        save_maps=cfg.save_maps,
        max_figures=cfg.max_figures,
        part_names=faceparts.part_names if faceparts is not None else None,
        class_names=recogniser.class_names,
        method=cfg.attribution.method,
        metrics=tuple(
            build_metrics(
                _metrics(cfg, faceparts), to_container(cfg.metric_options), area_fraction=cfg.segment.area_fraction
            )
        ),
    )
    summary = {
        "status": "ok",
        "task": "explain",
        "checkpoint": recogniser.source,
        "attribution": cfg.attribution.method,
        "layer": explainer.attribution.layer_name,
        "confidence": cfg.head.name,
        "variant": cfg.variant,
        "metrics": [m.name for m in settings.metrics],
        "score_directions": score_directions(settings.metrics),
    }
    if recogniser.class_names is not None:
        summary["gallery"] = recogniser.class_names
    return ExplainModule(explainer, dataset, settings), summary


def _verify_module(
    cfg: DictConfig, recogniser: Recogniser, dataset: PairDataset | TripletDataset, out: Path
) -> tuple[VerifyModule, dict[str, Any]]:
    """``mode=verify``: similar/different evidence maps of every pair or triplet, with any attribution
    method (:mod:`scout_exp.explain.verification`)."""
    method = cfg.attribution.method
    options = to_container(cfg.attribution.kwargs) if cfg.attribution.get("kwargs") else {}
    layer = _layer(cfg, cfg.attribution.layer or recogniser.target_layer)
    if recogniser.embedder is None:  # load_recogniser gives every mode=verify recogniser one
        raise UserError(f"mode=verify needs a face embedder; {recogniser.source} has none")
    explainer = VerificationExplainer(recogniser.embedder, layer, method, **options)
    module = VerifyModule(explainer, dataset, recogniser.same_person_distance, cfg.max_figures, cfg.save_maps)
    summary = {
        "status": "ok",
        "task": "explain",
        "mode": "verify",
        "checkpoint": recogniser.source,
        "attribution": method,
        "layer": explainer.layer_name,
    }
    return module, summary


def _layer(cfg: DictConfig, default: str | None) -> str | None:
    """The layer to give the configured method: ``default`` when it reads a layer; for a black box
    only an explicitly asked layer (which it refuses)."""
    return default if attribution_class(cfg.attribution.method).reads_layer else cfg.attribution.layer


def triplet_dataset(cfg: DictConfig, recogniser: Recogniser, preprocess: Preprocess) -> TripletDataset:
    """``max_pairs`` FaceParts triplets: of the identities the embedder never saw when it says so, else of ``split``."""
    datamodule = instantiate(cfg.data, input_spec=None)
    faceparts = datamodule.part_data
    if not isinstance(faceparts, FaceParts):  # triplets switch FaceParts' inner facial parts (SWAP_PARTS)
        raise UserError(f"pairs=triplets needs data=faceparts; {cfg.data._target_} has no FaceParts parts to switch")
    datamodule.setup()
    if recogniser.unseen_identities is not None:
        unseen = set(recogniser.unseen_identities)
        indices = [i for i in range(len(faceparts)) if faceparts.identity_of(i) in unseen]
    else:
        split = cfg.split or "val"
        if split not in datamodule.splits:
            raise UserError(f"unknown split {split!r}; choose train, val or test")
        indices = datamodule.splits[split].tolist()
    triplets = make_triplets(faceparts, indices, int(cfg.max_pairs or 200), seed=int(cfg.seed))
    return TripletDataset(faceparts, triplets, preprocess)


#: columns of the per-image score table mirrored to W&B
SCORE_COLUMNS = [
    "pair",
    "side",
    "class",
    "counter_class",
    "prob_class",
    "prob_counter",
    "confidence",
    "segment_area_fraction",
    "precision",
    "recall",
]


def _summarise(
    summary: dict[str, Any], records: Iterable[dict[str, Any]], recogniser: Recogniser, mode: str
) -> tuple[dict[str, Any], list[str], list[list[Any]], dict[str, Any] | None, list[dict[str, Any]]]:
    """One streamed pass over the records: the summary's scores (means with 95% bootstrap CIs), the
    figure paths, the score table rows, the mean PR curve (None without FaceParts ground truth) and
    the per-image metric values (scalars and curves only, for the metric figures)."""
    pr, figures, rows, n, cosine = PRMeans(), [], [], 0, 0.0
    items: list[dict[str, Any]] = []
    triplets: list[dict[str, Any]] = []
    for record in records:
        n += 1
        if "figure" in record:
            figures.append(record["figure"])
        if mode == "verify":
            cosine += record.get("cosine", record.get("cosine_non_mate", math.nan))
            if "share" in record or "non_mate_side" in record:
                triplets.append({k: v for k, v in record.items() if not isinstance(v, dict)} | _side(record))
            continue
        pr.add(record)
        items += [_metric_values(record[side]) for side in ("image_1", "image_2") if side in record]
        rows += [
            [record["pair"], side, *(record[f"image_{side}"].get(c) for c in SCORE_COLUMNS[2:])]
            for side in (1, 2)
            if f"image_{side}" in record
        ]
    summary["pairs"] = n
    if mode == "verify":
        summary["mean_cosine"] = cosine / n if n else float("nan")
        if triplets:
            summary.update(triplet_summary(triplets))
        return summary, figures, [], None, []
    scores = pr.result(AREA_FRACTIONS)
    curve = scores.pop("pr_curve", None)
    summary.update(scores)
    summary.update(summarise(items))
    return summary, figures, rows, curve, items


def _side(record: dict[str, Any]) -> dict[str, Any]:
    """The non-mate side's degenerate flag of a triplet record (what :func:`triplet_summary` reads)."""
    return {"non_mate_side": {"degenerate": record["non_mate_side"]["degenerate"]}}


def _metric_values(item: dict[str, Any]) -> dict[str, Any]:
    """The metric fields of one image's record (what :func:`summarise` and the metric figures read)."""
    return {k: v for k, v in item.items() if is_score(k) or is_figure_field(k)}


def _metrics(cfg: DictConfig, faceparts: Any) -> tuple[str, ...]:
    """``metrics`` of the config, validated; null: ``[parts]`` on FaceParts, none elsewhere."""
    names = cfg.get("metrics")
    if names is None:
        return ("parts",) if faceparts is not None else ()
    if isinstance(names, str):
        names = [names]
    data = "FaceParts" if faceparts is not None else ("the images=[...] input" if cfg.images else "the pairs file")
    return tuple(check_metrics(list(names), faceparts is not None, data))


def select_pairs(cfg: DictConfig) -> tuple[PartAnnotated | None, list[Pair]]:
    """Pairs from ``images``, ``pairs`` (CSV) or ``split``; on a part-annotated data set with none of them,
    the val split. Also the datamodule's ``part_data`` when the pairs are of a split, else None.

    UserError (one line) for a split of a data set without parts, or ``metrics`` with
    ``interventions`` on one without counterfactual renders.
    """
    images = list(cfg.images or [])
    if images and cfg.pairs:
        raise UserError("give either images=[...] or pairs=<csv>, not both")
    if images:
        return None, pairs_from_images(images, list(cfg.classes or []))
    if cfg.pairs:
        return None, pairs_from_csv(cfg.pairs)
    datamodule = instantiate(cfg.data, input_spec=None)
    datamodule.setup()
    split = cfg.split or "val"
    part_data = datamodule.part_data
    indices = datamodule.splits.get(split)
    if indices is None:
        raise UserError(f"unknown split {split!r}; choose train, val or test")
    if part_data is None:
        raise UserError(
            f"explaining a data split needs a part-annotated data set (e.g. data=faceparts); "
            f"for {cfg.data._target_} pass pairs=<csv>"
        )
    metrics = cfg.get("metrics") or ()
    if metrics_need([metrics] if isinstance(metrics, str) else list(metrics), "interventions"):
        require_counterfactuals(part_data, str(cfg.data._target_))
    return part_data, split_pairs(part_data, indices.tolist(), cfg.max_pairs)
