"""The ``explain`` task: load the recogniser, choose the pairs, run the predict loop, write the record."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from scout_exp.config import instantiate, instantiate_group, output_dir, save_resolved_config, to_container
from scout_exp.data.faceparts_triplets import TripletDataset, make_triplets
from scout_exp.data.transforms import Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.figures import save_pr_figure
from scout_exp.explain.pairs import (
    Pair,
    PairDataset,
    check_classes,
    faceparts_pairs,
    pairs_from_csv,
    pairs_from_images,
)
from scout_exp.explain.predict import ExplainModule, ExplainSettings, mean_pr
from scout_exp.explain.recogniser import Recogniser, load_recogniser
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.explain.verification import BLACK_BOX, VerificationExplainer, explain_pairs
from scout_exp.explain.verify_benchmark import explain_triplets, triplet_summary
from scout_exp.io import save_json

log = logging.getLogger(__name__)
#: scout: SCOUT counterfactual explanations of identities; verify: similarity maps of (probe, reference) pairs
MODES = ("scout", "verify")


def explain(cfg: DictConfig) -> dict[str, Any]:
    """Explain the configured pairs; write ``explanations.json``, figures and (optionally) raw maps."""
    start = time.perf_counter()
    out = output_dir()
    save_resolved_config(cfg, out / "config_resolved.yaml")
    torch.manual_seed(cfg.seed)
    mode = cfg.get("mode", "scout")
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if cfg.segment.threshold is None and not 0 < cfg.segment.area_fraction <= 1:
        raise UserError(f"segment.area_fraction must be in (0, 1], got {cfg.segment.area_fraction} (10% is 0.1)")
    if mode == "scout" and cfg.attribution.method in BLACK_BOX:
        raise UserError(f"attribution={cfg.attribution.method} explains similarity scores: use it with mode=verify")
    recogniser = load_recogniser(cfg)
    preprocess = Preprocess(recogniser.input_spec)
    if mode == "verify" and cfg.get("pairs") == "triplets":
        return _verify(cfg, recogniser, triplet_dataset(cfg, recogniser, preprocess), out, start)
    faceparts, pairs = select_pairs(cfg)
    dataset = PairDataset(pairs, preprocess, faceparts, align=cfg.get("align"))
    if mode == "verify":
        return _verify(cfg, recogniser, dataset, out, start)
    check_classes(pairs, recogniser.model.fc.out_features)
    explainer = ScoutExplainer(
        recogniser.model,
        attribution=cfg.attribution.method,
        target_layer=recogniser.layer(cfg.attribution.layer),
        confidence=cfg.head.name,
        variant=cfg.variant,
        **recogniser.explainer_kwargs,
    )
    settings = ExplainSettings(
        out_dir=out,
        area_fraction=cfg.segment.area_fraction,
        threshold=cfg.segment.threshold,
        save_maps=cfg.save_maps,
        max_figures=cfg.max_figures,
        part_names=_part_names(faceparts),
        class_names=recogniser.class_names,
    )
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[RichProgressBar()],
        precision="32-true",
        inference_mode=False,
        enable_checkpointing=False,
        max_epochs=None,
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers, shuffle=False)
    batches = trainer.predict(ExplainModule(explainer, dataset, settings), loader) or []
    records = _gather([r for batch in batches for r in batch])
    if not trainer.is_global_zero:
        return {}

    scores = mean_pr(records)
    curve = scores.pop("pr_curve", None)
    summary = {
        "status": "ok",
        "task": "explain",
        "checkpoint": recogniser.source,
        "attribution": cfg.attribution.method,
        "layer": explainer.attribution.layer_name,
        "confidence": cfg.head.name,
        "variant": cfg.variant,
        "pairs": len(records),
        **scores,
    }
    if recogniser.class_names is not None:
        summary["gallery"] = recogniser.class_names
    if cfg.get("align"):
        summary["align"] = cfg.align
    figures = [r["figure"] for r in records if "figure" in r]
    if curve:
        save_pr_figure(
            out / "figures" / "pr_curve.png",
            curve["area_fraction"],
            np.array(curve["precision"]),
            np.array(curve["recall"]),
            f"{cfg.attribution.method}, {cfg.variant}",
        )
        figures.append("figures/pr_curve.png")
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    save_json({"summary": summary, "figures": figures, "pr_curve": curve, "pairs": records}, out / "explanations.json")
    save_json(summary, out / "summary.json")
    _log(loggers, cfg, summary, records, out)
    log.info("explanations: %s", out / "explanations.json")
    return summary


def _verify(cfg: DictConfig, recogniser: Recogniser, dataset: Any, out: Path, start: float) -> dict[str, Any]:
    """``mode=verify``: similar/different evidence maps of every pair or triplet (:mod:`scout_exp.explain.verification`)."""
    # verification pairs are few: one device, the first GPU when the trainer config allows one
    use_gpu = torch.cuda.is_available() and str(cfg.trainer.get("accelerator", "auto")) in ("auto", "gpu", "cuda")
    recogniser.embedder.to("cuda" if use_gpu else "cpu")
    method = cfg.attribution.method
    options = {k: v for k, v in to_container(cfg.attribution).items() if k not in ("method", "layer")}
    # a black-box method reads no layer: only an explicitly asked one counts (and is refused)
    layer = cfg.attribution.layer if method in BLACK_BOX else cfg.attribution.layer or recogniser.target_layer
    explainer = VerificationExplainer(recogniser.embedder, layer, method, **options)
    settings = {"batch_size": cfg.batch_size, "max_figures": cfg.max_figures, "save_maps": cfg.save_maps}
    if isinstance(dataset, TripletDataset):
        records = explain_triplets(explainer, dataset, out, **settings)
        scores = triplet_summary(records)
    else:
        records = explain_pairs(explainer, dataset, out, threshold=recogniser.same_person_distance, **settings)
        scores = {"pairs": len(records)}
    cosines = [r.get("cosine", r.get("cosine_non_mate")) for r in records]
    summary = {
        "status": "ok",
        "task": "explain",
        "mode": "verify",
        "checkpoint": recogniser.source,
        "attribution": method,
        "layer": explainer.layer_name,
        **scores,
        "mean_cosine": float(np.mean(cosines)),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    if cfg.get("align"):
        summary["align"] = cfg.align
    figures = [r["figure"] for r in records if "figure" in r]
    save_json({"summary": summary, "figures": figures, "pairs": records}, out / "explanations.json")
    save_json(summary, out / "summary.json")
    for logger in instantiate_group(cfg.get("logger")):
        logger.log_hyperparams(to_container(cfg))
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "summary"):
            experiment.summary.update({k: v for k, v in summary.items() if v is not None})
            if figures:
                logger.log_image(key="verification", images=[str(out / f) for f in figures])
    log.info("explanations: %s", out / "explanations.json")
    return summary


def triplet_dataset(cfg: DictConfig, recogniser: Recogniser, preprocess: Preprocess) -> TripletDataset:
    """``max_pairs`` FaceParts triplets: of the identities the embedder never saw when it says so, else of ``split``."""
    datamodule = instantiate(cfg.data, input_spec=None)
    faceparts = getattr(datamodule, "faceparts", None)
    if faceparts is None:
        raise UserError(f"pairs=triplets needs data=faceparts; {cfg.data._target_} has no parts to switch")
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


def select_pairs(cfg: DictConfig) -> tuple[Any, list[Pair]]:
    """Pairs from ``images``, ``pairs`` (CSV) or ``split``; on FaceParts with none of them, the val split."""
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
    faceparts = getattr(datamodule, "faceparts", None)
    indices = datamodule.splits.get(split)
    if indices is None:
        raise UserError(f"unknown split {split!r}; choose train, val or test")
    if faceparts is None:
        raise UserError(f"explaining a data split needs FaceParts here; for {cfg.data._target_} pass pairs=<csv>")
    return faceparts, faceparts_pairs(faceparts, indices.tolist(), cfg.max_pairs)


def _part_names(faceparts: Any) -> tuple[str, ...] | None:
    if faceparts is None:
        return None
    from scout_exp.data.faceparts import FACE_PARTS

    return FACE_PARTS


def _gather(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' records on every rank, each pair once (the distributed sampler pads with repeats)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, records)
        records = [r for part in gathered for r in part]
    unique = {r["pair"]: r for r in records}
    return [unique[k] for k in sorted(unique)]


def _log(
    loggers: list[Any], cfg: DictConfig, summary: dict[str, Any], records: list[dict[str, Any]], out: Path
) -> None:
    """Mirror the run in W&B: config, summary, the figures and a table of scores."""
    for logger in loggers:
        logger.log_hyperparams(to_container(cfg))
        experiment = getattr(logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "summary"):
            continue
        experiment.summary.update({k: v for k, v in summary.items() if v is not None})
        figures = [str(out / r["figure"]) for r in records if "figure" in r]
        if figures:
            logger.log_image(key="explanations", images=figures)
        if (out / "figures" / "pr_curve.png").is_file():
            logger.log_image(key="pr_curve", images=[str(out / "figures" / "pr_curve.png")])
        columns = [
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
        rows = [
            [r["pair"], side, *(r[f"image_{side}"].get(c) for c in columns[2:])]
            for r in records
            for side in (1, 2)
            if f"image_{side}" in r
        ]
        logger.log_table(key="scores", columns=columns, data=rows)
