"""Streaming outputs of an explanation run: records written as batches finish, memory flat in the pairs.

:class:`RecordWriter` is a Lightning ``BasePredictionWriter``: every rank appends each finished
batch's per-pair records to its own JSON-lines file (``trainer.predict(..., return_predictions=False)``
keeps nothing in memory). :func:`iter_records` merges the ranks' files in dataset order, each pair
once (a distributed sampler pads with repeats), and :func:`write_explanations` writes
``explanations.json`` from that stream, atomically. A predict step returns a list of :class:`Prediction`: the
record and the files (figures, raw maps) it asks for, which the writer writes beside the records,
so a predict step computes and never writes.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from scout_exp.io import atomic_path

RECORDS_GLOB = ".records.rank*.jsonl"


def _finite(line: str) -> Any:
    """Parse a JSON line whose NaN / Infinity become None (strict JSON, as :func:`scout_exp.io.save_json` writes)."""
    return json.loads(line, parse_constant=lambda _constant: None)


#: writes one output file to the path it is given (e.g. ``functools.partial(save_png, figure)``)
FileWriter = Callable[[Path], object]


@dataclass
class Prediction:
    """One explained item of a predict batch: its dataset ``index``, its JSON-ready ``record`` and the
    ``files`` it asks for, each a path relative to the run folder (e.g. ``figures/pair_000.png``, also
    named in the record) and the function that writes it there."""

    index: int
    record: dict[str, Any]
    files: dict[str, FileWriter] = field(default_factory=dict)

    def write_files(self, out_dir: Path) -> None:
        """Write every file of :attr:`files` under ``out_dir`` (each writer writes atomically)."""
        for name, write in self.files.items():
            write(Path(out_dir) / name)


class RecordWriter(BasePredictionWriter):
    """Per batch, write each :class:`Prediction`'s files under ``<out>`` and append ``(index, record)``
    to ``<out>/.records.rank<r>.jsonl``.

    The predict step must return a list of :class:`Prediction`.
    """

    def __init__(self, out_dir: Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self._file: IO[str] | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.out_dir / f".records.rank{trainer.global_rank}.jsonl", "w")  # noqa: SIM115

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self._file is not None
        for item in prediction:
            item.write_files(self.out_dir)
        self._file.writelines(json.dumps([item.index, item.record]) + "\n" for item in prediction)
        self._file.flush()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every rank's file is complete before rank 0 merges


def iter_records(out_dir: Path) -> Iterator[dict[str, Any]]:
    """The records of all ranks in dataset order, each pair once (streamed from the files on disk)."""
    files = [open(p) for p in sorted(Path(out_dir).glob(RECORDS_GLOB))]  # noqa: SIM115
    try:
        last = None
        for index, record in heapq.merge(*((_finite(line) for line in f) for f in files), key=lambda r: r[0]):
            if index != last:
                yield record
            last = index
    finally:
        for f in files:
            f.close()


def remove_record_files(out_dir: Path) -> None:
    """Delete the per-rank record files once ``explanations.json`` holds them."""
    for path in Path(out_dir).glob(RECORDS_GLOB):
        path.unlink()


def write_explanations(path: Path, header: dict[str, Any], records: Iterable[dict[str, Any]]) -> Path:
    """Write ``{**header, "pairs": [records...]}`` as strict JSON, streaming the records, atomically."""
    head = json.dumps(_finite(json.dumps(header, default=_plain)), indent=2)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(head[:-1].rstrip() + (',\n  "pairs": [' if header else '{\n  "pairs": ['))
        for n, record in enumerate(records):
            f.write(("," if n else "") + "\n    " + json.dumps(record, default=_plain))
        f.write("\n  ]\n}\n")
    return path


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays, and paths, as JSON values."""
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    return str(obj)


class PRMeans:
    """Running means of the FaceParts scores over records, equal to ``np.nanmean`` over all of them.

    ``precision`` / ``recall``: over every image with a score; ``piou``: over pairs with one;
    ``pr_curve``: element-wise over the pairs' curves. Missing (None / NaN) values are skipped.
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {"precision": 0.0, "recall": 0.0, "piou": 0.0}
        self.counts: dict[str, int] = {"precision": 0, "recall": 0, "piou": 0}
        self.images = 0
        self.curve_sum: dict[str, np.ndarray] = {}
        self.curve_count: dict[str, np.ndarray] = {}

    def _add(self, key: str, value: Any) -> None:
        if value is not None and not np.isnan(value):
            self.sums[key] += float(value)
            self.counts[key] += 1

    def add(self, record: dict[str, Any]) -> None:
        """Fold one pair's record in."""
        for side in ("image_1", "image_2"):
            item = record.get(side)
            if item is not None and "precision" in item:
                self.images += 1
                self._add("precision", item["precision"])
                self._add("recall", item["recall"])
        if "piou" in record:
            self._add("piou", record["piou"])
        for key, values in (record.get("pr_curve") or {}).items():
            v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
            ok = ~np.isnan(v)
            self.curve_sum[key] = self.curve_sum.get(key, 0) + np.where(ok, v, 0)
            self.curve_count[key] = self.curve_count.get(key, 0) + ok

    def result(self, area_fractions: Iterable[float]) -> dict[str, Any]:
        """``precision``, ``recall``, ``piou`` and the mean ``pr_curve``; {} when no image has a score."""
        if not self.images:
            return {}

        def mean(key: str) -> float:
            return self.sums[key] / self.counts[key] if self.counts[key] else float("nan")

        curve = None
        if "precision" in self.curve_sum:  # no curve when every map was degenerate
            with np.errstate(invalid="ignore", divide="ignore"):
                curve = {
                    "area_fraction": list(area_fractions),
                    **{k: (self.curve_sum[k] / self.curve_count[k]).tolist() for k in ("precision", "recall")},
                }
        return {
            "precision": mean("precision"),
            "recall": mean("recall"),
            "piou": mean("piou"),
            "pr_curve": curve,
        }
