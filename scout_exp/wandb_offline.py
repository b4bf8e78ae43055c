"""Read an offline W&B run (``run-*.wandb``) without a server: config, summary and history.

wandb ships no Python reader for its transaction log any more (the Go ``wandb-core`` writes it),
so this parses the documented container itself: a 7-byte header (``:W&B``, magic 0xBEE1,
version 1), then LevelDB-log records (CRC32-C, length, type) in 32 KiB blocks, each payload a
``wandb_internal_pb2.Record``. Used by the tests and handy to check a run before ``wandb sync``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from scout_exp.errors import UserError

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[Any]:
    """Yield every protobuf ``Record`` stored in ``path``."""
    from wandb.proto import wandb_internal_pb2

    # the generated module builds its message classes at import time: mypy sees no ``Record`` in it
    pb2 = cast(Any, wandb_internal_pb2)
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise UserError(f"{path} is not a W&B run file (no :W&B header)")
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        pending = payload if kind in (_FULL, _FIRST) else pending + payload
        if kind in (_FULL, _LAST):
            record = pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"config": {...}, "summary": {...}, "history": [{...}, ...]}`` of an offline run folder."""
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise UserError(f"{run_dir} holds no run-*.wandb file; is it a wandb offline-run-* folder?")
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": []}
    for record in iter_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return out


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)
