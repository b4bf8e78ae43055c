"""The network an explanation run explains, loaded from a checkpoint, a weight file, or trained on demand."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from scout_exp.config import to_container
from scout_exp.data.transforms import InputSpec
from scout_exp.errors import UserError
from scout_exp.models import create_model
from scout_exp.training.module import load_classifier, read_checkpoint

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Recogniser:
    """A network in eval mode with what explaining it needs."""

    model: nn.Module
    input_spec: InputSpec
    target_layer: str | None
    source: str
    explainer_kwargs: dict[str, Any] = field(default_factory=dict)


def load_recogniser(cfg: DictConfig) -> Recogniser:
    """The checkpoint ``ckpt_path``; else the model's own weight file; else a FaceParts run (trained if none)."""
    model_cfg = to_container(cfg.model)
    if cfg.ckpt_path:
        return from_checkpoint(Path(cfg.ckpt_path), cfg.head.name)
    if (model_cfg.get("kwargs") or {}).get("weights"):
        model = create_model(model_cfg["name"], **model_cfg["kwargs"]).eval()
        return Recogniser(model, InputSpec.from_config(model_cfg["input"]), model_cfg.get("target_layer"),
                          str(model_cfg["kwargs"]["weights"]))
    if "FacePartsDataModule" not in str(cfg.data.get("_target_")):
        raise UserError("nothing to explain: pass ckpt_path=<train.py .ckpt> (or model.kwargs.weights=<file> "
                        "for a pretrained backbone)")
    return from_checkpoint(find_or_train_faceparts(cfg), cfg.head.name)


def from_checkpoint(path: Path, head: str) -> Recogniser:
    """Rebuild the trained network (and, for ``head=hardness``, its hardness predictor)."""
    hparams = read_checkpoint(path).get("hyper_parameters") or {}
    is_hardness = "trunk" in hparams
    if head == "hardness":
        if not is_hardness:
            raise UserError(f"head=hardness needs a checkpoint of `train.py head=hardness`; {path} holds a "
                            "plain classifier (use head=softmax or head=certainty with it)")
        from scout_exp.hardness.module import load_hardness

        module = load_hardness(path)
        kwargs = module.explainer_kwargs()
        model = kwargs.pop("model", module.model)
    else:
        if is_hardness:
            from scout_exp.hardness.module import load_hardness

            module = load_hardness(path)
        else:
            module = load_classifier(path)
        kwargs, model = {}, module.model
    spec = InputSpec.from_config(module.hparams["input_spec"] or {})
    return Recogniser(model.eval(), spec, module.hparams.get("target_layer"), str(path), kwargs)


def find_or_train_faceparts(cfg: DictConfig) -> Path:
    """The newest FaceParts checkpoint of this model and head under the log dir; train one if none."""
    found = newest_checkpoint(Path(cfg.paths.log_dir) / "train", cfg)
    if found is not None:
        log.info("explaining %s", found)
        return found
    log.warning("no FaceParts checkpoint of model=%s head=%s under %s/train: training one with train.py "
                "(a few minutes)", cfg.model.name, cfg.head.name, cfg.paths.log_dir)
    overrides = [f"model={cfg.model.name}", f"head={cfg.head.name}", f"paths.log_dir={cfg.paths.log_dir}"]
    overrides += [f"data.{k}={cfg.data[k]}" for k in ("num_identities", "images_per_identity", "image_size",
                                                       "difficulty", "seed")]
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides])
    found = newest_checkpoint(Path(cfg.paths.log_dir) / "train", cfg)
    if result.returncode != 0 or found is None:
        raise UserError(f"training a FaceParts classifier failed (python train.py {' '.join(overrides)}); "
                        "run it yourself and pass ckpt_path=...")
    return found


def newest_checkpoint(train_dir: Path, cfg: DictConfig) -> Path | None:
    """Newest ``last.ckpt`` of a finished run whose model, head and FaceParts settings match ``cfg``."""
    keys = ("num_identities", "images_per_identity", "image_size", "difficulty", "seed")
    candidates = []
    for summary in train_dir.glob("**/summary.json"):
        run = summary.parent
        ckpt = run / "checkpoints" / "last.ckpt"
        resolved = run / "config_resolved.yaml"
        if not ckpt.is_file() or not resolved.is_file():
            continue
        other = OmegaConf.load(resolved)
        same = (other.model.name == cfg.model.name and other.head.name == cfg.head.name
                and "FacePartsDataModule" in str(other.data.get("_target_"))
                and all(other.data.get(k) == cfg.data.get(k) for k in keys))
        if same:
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)
