"""Verification benchmark on FaceParts triplets: does the different-evidence map find the switched part?

Each (probe, mate, non-mate) triplet (:mod:`scout_exp.data.faceparts_triplets`) is explained as the
pair (probe, non-mate). On the non-mate, whose switched part is the exact ground truth of what
makes it another person, a method is scored by (docs/verification.md):

- ``share``: the fraction of its different-evidence mass on the switched part (the inpainting
  game's share of the map on the altered region);
- ``hit``: the pointing game, whether the map's maximum lies on the part;
- ``deletion_auc`` / ``insertion_auc`` of the cosine when the different evidence is removed /
  inserted first (:func:`scout_exp.metrics.perturbation_curves`).

Chance: a map that knows nothing (uniform, or a uniformly random maximum) scores the part's
area fraction on share and hit; for the AUCs, a seeded uniform random pixel map is perturbed by
the same protocol in every run (``chance_deletion_auc``, ``chance_insertion_auc``). Degenerate
maps (no evidence) get no share and no hit.
``python -m scout_exp.explain.verify_benchmark <log_dir>`` gathers the runs under ``log_dir`` into
a leaderboard (``leaderboard.json``, ``leaderboard.md``) with one chance row.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scout_exp.explain.verification import (
    DEGENERATE_MASS,
    VerificationExplainer,
    embedder_device,
    image_size_maps,
    side_record,
)
from scout_exp.explain.verification_figures import save_verification_figure
from scout_exp.explain.writer import Prediction
from scout_exp.io import atomic_path, save_json, save_npz
from scout_exp.metrics import mean_ci, perturbation_curves

SCORES = ("share", "hit", "deletion_auc", "insertion_auc")
#: deletion / insertion AUC of a uniform random pixel map (seeded: the same maps for every method)
CHANCE_AUCS = ("chance_deletion_auc", "chance_insertion_auc")


def inpainting_scores(different: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-map share on the truth, pointing-game hit and chance level; (B,) arrays, NaN when degenerate.

    ``different``: (B, H, W) non-negative maps; ``truth``: (B, H, W) bool masks of the switched part.
    """
    b = different.shape[0]
    flat, mask = different.reshape(b, -1), truth.reshape(b, -1).astype(bool)
    mass = flat.sum(axis=1)
    ok = mass >= DEGENERATE_MASS
    share = np.where(ok, (flat * mask).sum(axis=1) / np.where(ok, mass, 1.0), np.nan)
    hit = np.where(ok, mask[np.arange(b), flat.argmax(axis=1)].astype(float), np.nan)
    return {"share": share, "hit": hit, "chance": mask.mean(axis=1)}


def perturbation_aucs(
    embed: Callable[[Tensor], Tensor], images: Tensor, evidence: Tensor, partners: Tensor, **options: Any
) -> dict[str, Tensor]:
    """Deletion and insertion AUC (B,) of the cosine to fixed partner embeddings along the evidence maps.

    ``images`` (B, C, H, W) are perturbed most-evidence-first (:func:`scout_exp.metrics.perturbation_curves`,
    the RISE protocol); ``evidence`` (B, h, w); ``partners`` (B, D) unit embeddings of the other image
    of each pair. ``options``: ``steps``, ``baseline``, ``batch_size``. For the different-evidence map a
    faithful method makes the cosine *rise* under deletion (higher deletion AUC is better here).
    """

    def cosine(x: Tensor, index: Tensor) -> Tensor:
        return (F.normalize(embed(x), dim=1) * partners[index]).sum(dim=1)

    return {
        f"{mode}_auc": perturbation_curves(cosine, images, evidence, mode=mode, **options)[1]
        for mode in ("deletion", "insertion")
    }


def confidence_interval(values: Sequence[float]) -> list[float | None]:
    """95% bootstrap CI of the mean of ``values`` (:func:`scout_exp.metrics.mean_ci`); nulls when undefined."""
    _, lo, hi, _ = mean_ci(values)
    return [_finite_or_none(lo), _finite_or_none(hi)]


def explain_triplets(
    explainer: VerificationExplainer,
    dataset: Any,
    batch_size: int = 16,
    max_figures: int = 16,
    save_maps: bool = False,
) -> list[Prediction]:
    """Explain (probe, non-mate) of every triplet of a :class:`TripletDataset` and score it; each
    :class:`Prediction` holds the record and its figure (first ``max_figures``) and maps (``save_maps``)."""
    device = embedder_device(explainer.embedder)
    out = []
    gen = torch.Generator().manual_seed(0)  # the same random maps for every method: one chance row
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        probe, mate, non_mate = (batch[k].to(device) for k in ("probe", "mate", "non_mate"))
        e = explainer.explain(probe, non_mate)
        similar, different = image_size_maps(e, tuple(probe.shape[-2:]))
        truth = batch["truth"].numpy()
        scores = inpainting_scores(different[1], truth)
        probe_units = F.normalize(explainer.embed_no_grad(probe), dim=1)
        mate_cosine = (probe_units * F.normalize(explainer.embed_no_grad(mate), dim=1)).sum(dim=1)
        aucs = perturbation_aucs(explainer.embed_no_grad, non_mate, torch.from_numpy(different[1]), probe_units)
        random_maps = torch.rand(different[1].shape, generator=gen)
        chance = perturbation_aucs(explainer.embed_no_grad, non_mate, random_maps, probe_units)
        aucs.update({f"chance_{k}": v for k, v in chance.items()})
        for b, index in enumerate(batch["index"].tolist()):
            t = dataset.triplets[index]
            record: dict[str, Any] = {
                "pair": t.name,
                "probe": t.probe,
                "mate": t.mate,
                "switched_part": t.part,
                "donor_identity": t.donor,
                "cosine_mate": float(mate_cosine[b]),
                "cosine_non_mate": float(e.cosine[b]),
                "probe_side": side_record(similar[0, b], different[0, b]),
                "non_mate_side": side_record(similar[1, b], different[1, b]),
                "part_area": float(scores["chance"][b]),
                "share": _finite_or_none(scores["share"][b]),
                "hit": _finite_or_none(scores["hit"][b]),
            }
            record.update({k: _finite_or_none(float(v[b])) for k, v in aucs.items()})
            item = Prediction(index, record)
            if index < max_figures:
                title = (
                    f"{t.name}: {t.part} switched to identity {t.donor}'s (green); cosine mate "
                    f"{record['cosine_mate']:.3f}, non-mate {record['cosine_non_mate']:.3f}; {explainer.description}"
                )
                record["figure"] = f"figures/{t.name}_verify.png"
                item.files[record["figure"]] = partial(
                    save_verification_figure,
                    images=[
                        dataset.preprocess.invert(probe[b]),
                        _outline(dataset.preprocess.invert(non_mate[b]), truth[b]),
                    ],
                    similar=list(similar[:, b]),
                    different=list(different[:, b]),
                    labels=["probe", "non-mate"],
                    title=title,
                )
            if save_maps:
                record["maps"] = f"maps/{t.name}_verify.npz"
                item.files[record["maps"]] = partial(save_npz, non_mate_different=different[1, b], truth=truth[b])
            out.append(item)
    return out


def triplet_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means (with 95% CIs where available) of every score, chance levels, degenerate count, triplet accuracy."""
    out: dict[str, Any] = {"triplets": len(records)}
    for key in (*SCORES, *CHANCE_AUCS):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            out[key] = float(np.mean(values))
            out[f"{key}_ci"] = confidence_interval(values)
    area = [r["part_area"] for r in records]
    out["chance_share"] = out["chance_hit"] = float(np.mean(area))
    out["chance_share_ci"] = confidence_interval(area)
    out["degenerate"] = sum(r["non_mate_side"]["degenerate"] for r in records)
    out["mate_closer"] = float(np.mean([r["cosine_mate"] > r["cosine_non_mate"] for r in records]))
    return out


def _outline(image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``image`` with the ground-truth part outlined in green."""
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(np.ascontiguousarray(image).copy(), contours, -1, (0, 200, 0), 1)


def _finite_or_none(v: float) -> float | None:
    return None if not math.isfinite(float(v)) else float(v)


def collect_leaderboard(log_dir: Path) -> list[dict[str, Any]]:
    """One row per triplet run (``summary.json`` with ``triplets``) under ``log_dir``, best share first, then chance."""
    rows, chance = [], []
    for path in sorted(Path(log_dir).glob("**/summary.json")):
        s = json.loads(path.read_text() or "{}")
        if s.get("mode") != "verify" or "triplets" not in s:
            continue
        rows.append(
            {
                "method": s["attribution"],
                "layer": s.get("layer"),
                "run": str(path.parent),
                **{
                    k: s.get(k)
                    for k in ("triplets", *SCORES, *(f"{k}_ci" for k in SCORES), "degenerate", "wall_time_s")
                },
            }
        )
        chance.append(s)
    rows.sort(key=lambda r: -(r.get("share") or 0.0))
    if chance:
        s = chance[0]
        row = {"method": "chance (uniform map)", "triplets": s["triplets"], "share": s["chance_share"]}
        row.update(share_ci=s.get("chance_share_ci"), hit=s["chance_share"])
        for key in ("deletion_auc", "insertion_auc"):
            row.update({key: s.get(f"chance_{key}"), f"{key}_ci": s.get(f"chance_{key}_ci")})
        rows.append(row)
    return rows


def leaderboard_markdown(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as a Markdown table (mean [95% CI])."""

    def cell(r: dict[str, Any], key: str) -> str:
        if r.get(key) is None:
            return "-"
        ci = r.get(f"{key}_ci")
        return f"{r[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = [
        "| method | triplets | share on part | pointing hit | deletion AUC | insertion AUC | s/run |",
        "|---" * 7 + "|",
    ]
    for r in rows:
        t = r.get("wall_time_s")
        lines.append(
            f"| {r['method']} | {r['triplets']} | "
            + " | ".join(cell(r, k) for k in SCORES)
            + f" | {'-' if t is None else f'{t:.0f}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """``python -m scout_exp.explain.verify_benchmark LOG_DIR``: write LOG_DIR/leaderboard.{json,md}."""
    parser = argparse.ArgumentParser(prog="python -m scout_exp.explain.verify_benchmark", description=__doc__)
    parser.add_argument("log_dir", type=Path, help="folder holding explain.py mode=verify pairs=triplets runs")
    args = parser.parse_args(argv)
    rows = collect_leaderboard(args.log_dir)
    save_json(rows, args.log_dir / "leaderboard.json")
    md = leaderboard_markdown(rows)
    with atomic_path(args.log_dir / "leaderboard.md") as tmp:
        tmp.write_text(md)
    print(md)
    return rows


if __name__ == "__main__":
    main()
