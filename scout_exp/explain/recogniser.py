"""The network an explanation run explains, loaded from a checkpoint, a weight file, or trained on demand.

An embedding network (model config ``embedding: <size>``, e.g. the face descriptor) or the pooled
features of a classifier become a recogniser of identities with a gallery (config ``gallery``):
:class:`scout_exp.models.gallery.GalleryClassifier` gives scaled-cosine class logits, so SCOUT's
class, counter-class and confidence maps apply unchanged. ``mode=verify`` uses the embedder alone.
"""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from scout_exp.config import to_container
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError
from scout_exp.models import create_model, split_classifier
from scout_exp.training.margin import is_margin_checkpoint, load_embedder
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
    class_names: list[str] | None = None  # gallery identities, one per class
    layer_prefix: str = ""  # where the configured network sits inside ``model`` ("embedder." in a gallery)
    embedder: nn.Module | None = None  # image -> descriptor, for galleries and mode=verify
    same_person_distance: float | None = None  # descriptor distance below which a pair is one person
    unseen_identities: list[int] | None = None  # FaceParts identities a margin-trained embedder never trained on

    def layer(self, name: str | None) -> str | None:
        """The attribution layer: ``name`` (a layer of the configured network) or the model's default."""
        name = name or self.target_layer
        if name is None or not self.layer_prefix or name.startswith(self.layer_prefix):
            return name
        return self.layer_prefix + name


def load_recogniser(cfg: DictConfig) -> Recogniser:
    """The network of ``cfg`` (see :func:`load_network`); with a gallery, the identities it recognises.

    An embedding model needs a gallery to be explained with SCOUT (``mode=verify`` does not).
    """
    from scout_exp.explain.faces import enrol_gallery, has_gallery

    recogniser = load_network(cfg)
    model_cfg = to_container(cfg.model)
    gallery_cfg = to_container(cfg.gallery) if cfg.get("gallery") is not None else {}
    outputs_embeddings = recogniser.embedder is not None
    if cfg.get("mode", "scout") == "verify":
        if recogniser.embedder is None and not has_gallery(gallery_cfg):
            raise UserError(
                f"mode=verify compares face descriptors, but {recogniser.source} is a classifier with no embedding "
                "and no gallery: train an embedder (python train.py experiment=verify_embedder) and pass its "
                "ckpt_path, use a model with an embedding (model=face_descriptor), or enrol a gallery "
                "(gallery.folder=...) to compare the classifier's pooled features"
            )
        recogniser.embedder = recogniser.embedder or features_of(recogniser.model)
        return recogniser
    if not has_gallery(gallery_cfg):
        if outputs_embeddings:
            raise UserError(
                f"model {model_cfg['name']} outputs {model_cfg['embedding']}-d embeddings, not "
                "identities: enrol a gallery (gallery.folder=<folder>/<identity>/<images>) or use "
                "mode=verify"
            )
        return recogniser
    if cfg.head.name == "hardness":
        raise UserError(
            "head=hardness needs a trained hardness predictor, which a gallery does not have; "
            "use head=softmax or head=certainty"
        )
    recogniser.embedder = recogniser.embedder or features_of(recogniser.model)
    model = enrol_gallery(gallery_cfg, recogniser.embedder, Preprocess(recogniser.input_spec)).eval()
    log.info("gallery of %d identities: %s", len(model.names), ", ".join(model.names))
    recogniser.model, recogniser.explainer_kwargs = model, {}
    recogniser.class_names, recogniser.layer_prefix = list(model.names), "embedder."
    return recogniser


def features_of(model: nn.Module) -> nn.Module:
    """A copy of a classifier without its identity layer: image -> the pooled feature ``fc`` reads."""
    trunk, _ = split_classifier(copy.deepcopy(model))
    return trunk


def load_network(cfg: DictConfig) -> Recogniser:
    """The checkpoint ``ckpt_path``; else the model's own or zoo weights; else a FaceParts run (trained if none)."""
    model_cfg = to_container(cfg.model)
    if cfg.ckpt_path:
        return from_checkpoint(Path(cfg.ckpt_path), cfg.head.name, cfg.attribution.get("layer"))
    kwargs = dict(model_cfg.get("kwargs") or {})
    if kwargs.get("weights") or kwargs.get("pretrained") or kwargs.get("weights_dir"):
        return from_weights(model_cfg)
    if "FacePartsDataModule" not in str(cfg.data.get("_target_")):
        raise UserError(
            "nothing to explain: pass ckpt_path=<train.py .ckpt> (or model.kwargs.weights=<file> "
            "for a pretrained backbone)"
        )
    return from_checkpoint(find_or_train_faceparts(cfg), cfg.head.name, cfg.attribution.get("layer"))


def from_weights(model_cfg: dict[str, Any]) -> Recogniser:
    """A registered model built with its own weights: a weight file (``kwargs.weights``) or a zoo entry.

    The identity count is ``kwargs.num_classes``, else the embedding size (``embedding``; the model
    then outputs descriptors and is its own embedder), else the rows of ``fc.weight`` in the weight file.
    """
    kwargs = dict(model_cfg.get("kwargs") or {})
    zoo = model_cfg.get("zoo")
    source = str(kwargs.get("weights") or kwargs.get("weights_dir") or "")
    if zoo and not kwargs.get("weights_dir"):
        from scout_exp.zoo import weights_path

        source = f"zoo:{zoo} ({weights_path(zoo)})"
    num_classes = kwargs.pop("num_classes", None) or model_cfg.get("embedding")
    if num_classes is None and kwargs.get("weights"):
        num_classes = _classes_in_weight_file(str(kwargs["weights"]))
    if num_classes is None:
        raise UserError(f"model {model_cfg['name']}: set +model.kwargs.num_classes=<identities of its weights>")
    model = create_model(model_cfg["name"], int(num_classes), **kwargs).eval()
    embedding = model_cfg.get("embedding")
    return Recogniser(
        model,
        InputSpec.from_config(model_cfg["input"]),
        model_cfg.get("target_layer"),
        source,
        embedder=model if embedding else None,
        same_person_distance=model_cfg.get("same_person_distance") if embedding else None,
    )


def _classes_in_weight_file(path: str) -> int:
    """Rows of ``fc.weight`` in a pickled ``{name: array}`` weight file (e.g. VGGFace2's 8,631)."""
    from scout_exp.models.pickled_weights import load_pickled_weights

    fc = load_pickled_weights(path).get("fc.weight")
    if fc is None or fc.ndim != 2:
        raise UserError(f"{path} has no 2-d fc.weight; set +model.kwargs.num_classes=<identities>")
    return int(fc.shape[0])


def from_checkpoint(path: Path, head: str, layer: str | None = None) -> Recogniser:
    """Rebuild the trained network (and, for ``head=hardness``, its hardness predictor, explained at ``layer``)."""
    hparams = read_checkpoint(path).get("hyper_parameters") or {}
    if is_margin_checkpoint(hparams):  # a margin-softmax face embedder (train.py head=arcface)
        embedder = load_embedder(path)
        spec = InputSpec.from_config(embedder.hparams["input_spec"] or {})
        unseen = list(range(embedder.num_train, int(embedder.hparams["num_classes"])))
        model = embedder.model.eval()
        return Recogniser(model, spec, hparams.get("target_layer"), str(path), embedder=model, unseen_identities=unseen)
    is_hardness = "trunk" in hparams
    if head == "hardness":
        if not is_hardness:
            raise UserError(
                f"head=hardness needs a checkpoint of `train.py head=hardness`; {path} holds a "
                "plain classifier (use head=softmax or head=certainty with it)"
            )
        from scout_exp.hardness.module import load_hardness

        module = load_hardness(path)
        kwargs = module.explainer_kwargs(layer)
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
    log.warning(
        "no FaceParts checkpoint of model=%s head=%s under %s/train: training one with train.py (a few minutes)",
        cfg.model.name,
        cfg.head.name,
        cfg.paths.log_dir,
    )
    overrides = [f"model={cfg.model.name}", f"head={cfg.head.name}", f"paths.log_dir={cfg.paths.log_dir}"]
    overrides += [
        f"data.{k}={cfg.data[k]}" for k in ("num_identities", "images_per_identity", "image_size", "difficulty", "seed")
    ]
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides])
    found = newest_checkpoint(Path(cfg.paths.log_dir) / "train", cfg)
    if result.returncode != 0 or found is None:
        raise UserError(
            f"training a FaceParts classifier failed (python train.py {' '.join(overrides)}); "
            "run it yourself and pass ckpt_path=..."
        )
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
        if json.loads(summary.read_text() or "{}").get("status") != "ok":  # a crashed run keeps its last.ckpt
            continue
        other = OmegaConf.load(resolved)
        same = (
            other.model.name == cfg.model.name
            and other.head.name == cfg.head.name
            and "FacePartsDataModule" in str(other.data.get("_target_"))
            and all(other.data.get(k) == cfg.data.get(k) for k in keys)
        )
        if same:
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)
