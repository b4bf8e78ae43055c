"""The checkpoint to explain when none is given: the newest matching run under the log dir, or one
trained on demand (the ``train`` task of train.py) with the explain command line's settings."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from scout_exp.config import compose_config
from scout_exp.errors import UserError
from scout_exp.tasks.train import train

log = logging.getLogger(__name__)
#: data settings (FaceParts' names) a checkpoint must share with the run that explains it, besides the
#: data set's ``_target_``; a data set without one of them matches on the others
FACEPARTS_KEYS = ("num_identities", "images_per_identity", "image_size", "difficulty", "seed")
#: groups of the explain command line that also shape a checkpoint trained on demand
TRAIN_GROUPS = ("model", "data", "objective", "head", "trainer", "optimizer")


def find_or_train(cfg: DictConfig) -> Path:
    """The newest checkpoint of this model, objective and data set under the log dir; train one in this
    process (the ``train`` task of train.py) if none."""
    found = newest_checkpoint(Path(cfg.paths.log_dir) / "train", cfg)
    if found is not None:
        log.info("explaining %s", found)
        return found
    log.warning(
        "no checkpoint of model=%s objective=%s on %s under %s/train: training one (a few minutes)",
        cfg.model.name,
        cfg.objective.name,
        cfg.data._target_,
        cfg.paths.log_dir,
    )
    run_dir = Path(cfg.paths.log_dir) / "train" / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S")
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    choices = hydra_cfg.runtime.choices if hydra_cfg else {}
    # the command line's model / data / objective / trainer / optimizer overrides apply to the training too
    forwarded = [o for o in (hydra_cfg.overrides.task if hydra_cfg else []) if _override_key(o) in TRAIN_GROUPS]
    keys = {o.lstrip("+~").split("=", 1)[0] for o in forwarded}
    overrides = [
        f"model={cfg.model.name}",
        f"objective={cfg.objective.name}",
        f"head={cfg.head.name}",
        f"logger={choices.get('logger') or 'none'}",
        f"paths.log_dir={cfg.paths.log_dir}",
        f"paths.output_dir={run_dir}",
        *(f"data.{k}={cfg.data[k]}" for k in FACEPARTS_KEYS if k in cfg.data),
    ]
    overrides = [o for o in overrides if o.split("=", 1)[0] not in keys] + forwarded
    summary = train(compose_config("train", overrides))
    torch.manual_seed(cfg.seed)  # training drew from the global generator; explain as if it had not
    found = newest_checkpoint(Path(cfg.paths.log_dir) / "train", cfg)
    if summary.get("status") != "ok" or found is None:
        raise UserError(
            f"training a classifier on {cfg.data._target_} failed (python train.py {' '.join(overrides)}); "
            "run it yourself and pass ckpt_path=..."
        )
    return found


def _override_key(override: str) -> str:
    """The config group or top-level key an override sets (``+data.seed=1`` -> ``data``)."""
    return override.lstrip("+~").split("=", 1)[0].split(".", 1)[0]


def newest_checkpoint(train_dir: Path, cfg: DictConfig) -> Path | None:
    """Newest ``last.ckpt`` of a finished run whose model, objective and data set (``_target_`` and
    ``FACEPARTS_KEYS``) match ``cfg``."""
    candidates = []
    for summary in train_dir.glob("**/summary.json"):
        run = summary.parent
        ckpt = run / "checkpoints" / "last.ckpt"
        resolved = run / "config_resolved.yaml"
        if not ckpt.is_file() or not resolved.is_file():
            continue
        if json.loads(summary.read_text() or "{}").get("status") != "ok":  # a crashed run keeps its last.ckpt
            continue
        other = OmegaConf.load(resolved)
        same = isinstance(other, DictConfig) and (
            other.model.name == cfg.model.name
            and other.get("objective", {}).get("name") == cfg.objective.name
            and other.data.get("_target_") == cfg.data.get("_target_")
            and all(other.data.get(k) == cfg.data.get(k) for k in FACEPARTS_KEYS)
        )
        if same:
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)
