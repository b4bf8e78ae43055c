"""Template-based protocols in the style of IJB-A: template lists, template pairs, gallery/probe.

Files (CSV, header row, extra columns ignored, as IJB-A's ``verify_metadata_k.csv``,
``search_gallery_k.csv`` and ``search_probe_k.csv``): ``TEMPLATE_ID,SUBJECT_ID,FILE``, one row per
image of a template. Pair files (``verify_comparisons_k.csv``): two template ids per row, header
optional. Ids are kept as strings.

Template score (cosine similarities of the images' features), selected by ``reduce``:

- ``"mean"`` (default): mean over all image pairs of the two templates; equal to the dot product
  of the templates' mean unit-length features;
- ``"max"``: the best image pair;
- ``"mean_best"``: the mean of each image's best match in the other template (both directions),
  the score behind the reference's published IJB-A numbers (``CNN_single_verify.m``, metric 3).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scout_exp.errors import UserError
from scout_exp.evaluation.identification import cmc
from scout_exp.evaluation.verification import eer, tar_at_far

REDUCTIONS = ("mean", "max", "mean_best")


@dataclass(frozen=True)
class TemplateSet:
    """Rows of a template file: template id, subject id and image file of each row."""

    template_ids: tuple[str, ...]
    subject_ids: tuple[str, ...]
    files: tuple[str, ...]

    def templates(self) -> tuple[list[str], list[str], list[list[str]]]:
        """Unique template ids (first-appearance order), their subjects and their files."""
        order: dict[str, int] = {}
        subjects: list[str] = []
        files: list[list[str]] = []
        for t, s, f in zip(self.template_ids, self.subject_ids, self.files):
            if t not in order:
                order[t] = len(order)
                subjects.append(s)
                files.append([])
            elif subjects[order[t]] != s:
                raise UserError(f"template {t} mixes subjects {subjects[order[t]]} and {s}; fix the template file")
            files[order[t]].append(f)
        return list(order), subjects, files


def read_template_csv(path: str | os.PathLike[str]) -> TemplateSet:
    """Read ``TEMPLATE_ID,SUBJECT_ID,FILE`` rows (column names case-insensitive)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"template file {p} does not exist")
    with open(p, newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().upper() for h in next(reader, [])]
        try:
            cols = [header.index(name) for name in ("TEMPLATE_ID", "SUBJECT_ID", "FILE")]
        except ValueError:
            raise UserError(f"{p}: header must name TEMPLATE_ID, SUBJECT_ID and FILE; got {header}") from None
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) <= max(cols):
                raise UserError(f"{p}:{lineno}: expected at least {max(cols) + 1} columns, got {len(row)}")
            rows.append(tuple(row[c].strip() for c in cols))
    if not rows:
        raise UserError(f"{p} lists no images")
    t, s, f = zip(*rows)
    return TemplateSet(t, s, f)


def read_template_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Read template pairs: two ids per row; a first row that is not two integers is a header."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"template pair file {p} does not exist")
    pairs: list[tuple[str, str]] = []
    with open(p, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            row = [c.strip() for c in row if c.strip()]
            if not row:
                continue
            if lineno == 1 and not all(c.lstrip("-").isdigit() for c in row):
                continue
            if len(row) != 2:
                raise UserError(f"{p}:{lineno}: expected two template ids, got {row}")
            pairs.append((row[0], row[1]))
    if not pairs:
        raise UserError(f"{p} lists no pairs")
    return pairs


def _unit_rows(features: np.ndarray | torch.Tensor) -> np.ndarray:
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    f = f.astype(np.float64)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _rows(file_lists: list[list[str]], index: dict[str, int]) -> list[np.ndarray]:
    out = []
    for files in file_lists:
        missing = [f for f in files if f not in index]
        if missing:
            raise UserError(f"no feature for image {missing[0]!r}; extract features for every listed file")
        out.append(np.array([index[f] for f in files], dtype=np.int64))
    return out


def template_similarity(
    unit: np.ndarray, rows_a: list[np.ndarray], rows_b: list[np.ndarray], reduce: str = "mean"
) -> np.ndarray:
    """(len(rows_a), len(rows_b)) template scores from unit-length image features ``unit``."""
    if reduce not in REDUCTIONS:
        raise UserError(f"unknown template score {reduce!r}; choose one of {', '.join(REDUCTIONS)}")
    if reduce == "mean":
        mean_a = np.stack([unit[r].mean(axis=0) for r in rows_a])
        mean_b = np.stack([unit[r].mean(axis=0) for r in rows_b])
        return mean_a @ mean_b.T
    cat_b = np.concatenate(rows_b)
    sizes_b = np.array([r.size for r in rows_b])
    starts = np.r_[0, np.cumsum(sizes_b)[:-1]]
    feats_b = unit[cat_b]
    out = np.empty((len(rows_a), len(rows_b)))
    for i, ra in enumerate(rows_a):
        block = unit[ra] @ feats_b.T
        best_in_b = np.maximum.reduceat(block, starts, axis=1)
        if reduce == "max":
            out[i] = best_in_b.max(axis=0)
        else:
            best_in_a = np.add.reduceat(block.max(axis=0), starts)
            out[i] = (best_in_b.sum(axis=0) + best_in_a) / (ra.size + sizes_b)
    return out


def evaluate_templates(
    features: np.ndarray | torch.Tensor,
    feature_files: Sequence[str],
    *,
    verify_set: TemplateSet | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    gallery: TemplateSet | None = None,
    probe: TemplateSet | None = None,
    reduce: str = "mean",
    fars: Sequence[float] = (1e-2, 1e-3),
    ranks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Verification (``verify_set`` + ``pairs``) and closed-set identification (``gallery`` +
    ``probe``) on templates. ``features`` (N, D) are the images' features, row k for
    ``feature_files[k]``. Returns ``tar@far=<far>``, ``eer``, ``n_pairs``, ``rank<k>``, ``n_probes``
    for the parts that were given."""
    unit = _unit_rows(features)
    if unit.shape[0] != len(feature_files):
        raise UserError(f"{unit.shape[0]} features for {len(feature_files)} files; give one file per row")
    index = {f: k for k, f in enumerate(feature_files)}
    result: dict[str, float] = {}
    if (verify_set is None) != (pairs is None):
        raise UserError("verification needs both a template file and a pair file")
    if verify_set is not None and pairs is not None:
        ids, subjects, files = verify_set.templates()
        pos = {t: k for k, t in enumerate(ids)}
        unknown = [t for pair in pairs for t in pair if t not in pos]
        if unknown:
            raise UserError(f"pair lists template {unknown[0]} that the template file does not define")
        used = sorted({pos[t] for pair in pairs for t in pair})
        local = {k: i for i, k in enumerate(used)}
        rows = _rows([files[k] for k in used], index)
        sim = template_similarity(unit, rows, rows, reduce)
        a = np.array([local[pos[t1]] for t1, _ in pairs])
        b = np.array([local[pos[t2]] for _, t2 in pairs])
        scores = sim[a, b]
        same = np.array([subjects[pos[t1]] == subjects[pos[t2]] for t1, t2 in pairs])
        for far, tar in tar_at_far(scores, same, fars).items():
            result[f"tar@far={far:g}"] = tar
        result["eer"] = eer(scores, same)
        result["n_pairs"] = float(len(pairs))
    if (gallery is None) != (probe is None):
        raise UserError("identification needs both a gallery and a probe template file")
    if gallery is not None and probe is not None:
        _, g_subj, g_files = gallery.templates()
        _, p_subj, p_files = probe.templates()
        sim = template_similarity(unit, _rows(p_files, index), _rows(g_files, index), reduce)
        for k, rate in cmc(sim, p_subj, g_subj, ranks).items():
            result[f"rank{k}"] = rate
        result["n_probes"] = float(sum(s in set(g_subj) for s in p_subj))
    return result


def load_ijba_split(root: str | os.PathLike[str], split: int) -> dict[str, Any]:
    """Protocol files of IJB-A split ``split`` under ``root`` (``verify/split{k}/verify_metadata_{k}.csv``,
    ``verify_comparisons_{k}.csv``, ``search/split{k}/search_gallery_{k}.csv``, ``search_probe_{k}.csv``),
    as keyword arguments for :func:`evaluate_templates`."""
    base = Path(root)
    v = base / "verify" / f"split{split}"
    s = base / "search" / f"split{split}"
    return {
        "verify_set": read_template_csv(v / f"verify_metadata_{split}.csv"),
        "pairs": read_template_pairs(v / f"verify_comparisons_{split}.csv"),
        "gallery": read_template_csv(s / f"search_gallery_{split}.csv"),
        "probe": read_template_csv(s / f"search_probe_{split}.csv"),
    }
