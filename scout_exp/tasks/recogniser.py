"""The one recogniser loader: a checkpoint, pretrained weights, or a run on a part-annotated data set
(e.g. FaceParts) trained on demand become the model, its confidence head and its input spec.

An embedding network (model config ``embedding: <size>``, e.g. the face descriptor) or the pooled
features of a classifier become a recogniser of identities with a gallery (config ``gallery``):
:class:`scout_exp.models.gallery.GalleryClassifier` gives scaled-cosine class logits, so SCOUT's
class, counter-class and confidence maps apply unchanged. ``mode=verify`` uses the embedder alone.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import nn

from scout_exp.config import compose_config, instantiate, to_container
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.faces import enrol_gallery, has_gallery
from scout_exp.heads import ConfidenceHead, create_head
from scout_exp.models import create_model, model_info, resolve_model_config, split_classifier
from scout_exp.models.pickled_weights import load_pickled_weights
from scout_exp.tasks.train import train
from scout_exp.training.objectives import load_trained
from scout_exp.zoo import weights_path

log = logging.getLogger(__name__)
#: data settings (FaceParts' names) a checkpoint must share with the run that explains it, besides the
#: data set's ``_target_``; a data set without one of them matches on the others
FACEPARTS_KEYS = ("num_identities", "images_per_identity", "image_size", "difficulty", "seed")
#: groups of the explain command line that also shape a checkpoint trained on demand
TRAIN_GROUPS = ("model", "data", "objective", "head", "trainer", "optimizer")


@dataclass
class Recogniser:
    """A network in eval mode with what explaining it needs."""

    model: nn.Module
    head: ConfidenceHead
    input_spec: InputSpec
    target_layer: str | None
    source: str
    class_names: list[str] | None = None  # gallery identities, one per class
    layer_prefix: str = ""  # where the configured network sits inside ``model`` ("embedder." in a gallery)
    embedder: nn.Module | None = None  # image -> descriptor, for galleries and mode=verify
    same_person_distance: float | None = None  # descriptor distance below which a pair is one person
    network: str | None = None  # registered model name a checkpoint was trained with
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
    recogniser = load_network(cfg, create_head(cfg.head.name))
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
    if recogniser.head.needs_training():
        raise UserError(f"{recogniser.head.needs_training()}, which a gallery does not have; use another head=")
    recogniser.embedder = recogniser.embedder or features_of(recogniser.model)
    model = enrol_gallery(gallery_cfg, recogniser.embedder, Preprocess(recogniser.input_spec)).eval()
    log.info("gallery of %d identities: %s", len(model.names), ", ".join(model.names))
    recogniser.model = model
    recogniser.class_names, recogniser.layer_prefix = list(model.names), "embedder."
    return recogniser


def features_of(model: nn.Module) -> nn.Module:
    """A copy of a classifier without its identity layer: image -> the pooled feature ``fc`` reads."""
    trunk, _ = split_classifier(copy.deepcopy(model))
    return trunk


def load_network(cfg: DictConfig, head: ConfidenceHead) -> Recogniser:
    """The checkpoint ``ckpt_path``; else the model's own or zoo weights; else, on a part-annotated data set
    (a datamodule with ``part_data``, e.g. FaceParts), a run on it (trained if none)."""
    model_cfg = to_container(cfg.model)
    layer = cfg.attribution.get("layer")
    if cfg.ckpt_path:
        recogniser = from_checkpoint(Path(cfg.ckpt_path), head, layer)
        warn_other_network(cfg.model.name, recogniser.network, cfg.ckpt_path)
        return recogniser
    kwargs = dict(model_cfg.get("kwargs") or {})
    if kwargs.get("weights") or kwargs.get("pretrained") or kwargs.get("weights_dir"):
        if head.needs_training():
            raise UserError(f"{head.needs_training()}; pretrained weights hold none (pass ckpt_path=...)")
        return from_weights(model_cfg, head)
    if instantiate(cfg.data, input_spec=None).part_data is None:
        raise UserError(
            "nothing to explain: pass ckpt_path=<train.py .ckpt> (or model.kwargs.weights=<file> "
            "for a pretrained backbone)"
        )
    return from_checkpoint(find_or_train(cfg), head, layer)


def from_weights(model_cfg: dict[str, Any], head: ConfidenceHead) -> Recogniser:
    """A registered model built with its own weights: a weight file (``kwargs.weights``) or a zoo entry.

    The identity count is ``kwargs.num_classes``, else the embedding size (``embedding``; the model
    then outputs descriptors and is its own embedder), else the rows of ``fc.weight`` in the weight file.
    """
    model_cfg = resolve_model_config(model_cfg)
    kwargs = dict(model_cfg.get("kwargs") or {})
    zoo = model_cfg.get("zoo")
    source = str(kwargs.get("weights") or kwargs.get("weights_dir") or "")
    if zoo and not kwargs.get("weights_dir"):
        source = f"zoo:{zoo} ({weights_path(zoo)})"
    num_classes = kwargs.pop("num_classes", None) or model_cfg.get("embedding")
    if num_classes is None and kwargs.get("weights"):
        num_classes = _classes_in_weight_file(str(kwargs["weights"]), model_info(model_cfg["name"]).classifier)
    if num_classes is None:
        raise UserError(f"model {model_cfg['name']}: set +model.kwargs.num_classes=<identities of its weights>")
    model = create_model(model_cfg["name"], int(num_classes), **kwargs).eval()
    embedding = model_cfg.get("embedding")
    return Recogniser(
        model,
        head,
        InputSpec.from_config(model_cfg["input"]),
        model_cfg.get("target_layer"),
        source,
        embedder=model if embedding else None,
        same_person_distance=model_cfg.get("same_person_distance") if embedding else None,
    )


def _classes_in_weight_file(path: str, classifier: str = "fc") -> int:
    """Rows of ``<classifier>.weight`` in a pickled ``{name: array}`` weight file (e.g. VGGFace2's 8,631)."""
    fc = load_pickled_weights(path).get(f"{classifier}.weight")
    if fc is None or fc.ndim != 2:
        raise UserError(f"{path} has no 2-d {classifier}.weight; set +model.kwargs.num_classes=<identities>")
    return int(fc.shape[0])


def from_checkpoint(path: Path, head: ConfidenceHead, layer: str | None = None) -> Recogniser:
    """Rebuild the network a train.py checkpoint holds (dispatching on the objective it records) and
    attach ``head`` to it (a hardness head takes the checkpoint's predictor, explained at ``layer``).

    A face embedder (an objective whose module has ``unseen_identities``, e.g. ``objective=arcface``)
    comes back as its own embedder, with the identities it never trained on.
    """
    module, _ = load_trained(path)
    network = module.hparams.get("model_name")
    # a checkpoint records what its config set; the backbone's registration fills what it left null
    target_layer, spec_cfg = module.hparams.get("target_layer"), module.hparams.get("input_spec") or {}
    if network is not None:
        facts = resolve_model_config({"name": network, "input": spec_cfg, "target_layer": target_layer})
        target_layer, spec_cfg = facts["target_layer"], facts["input"]
    spec = InputSpec.from_config(spec_cfg)
    if hasattr(module, "unseen_identities"):
        if head.needs_training():
            raise UserError(f"{head.needs_training()}; {path} holds a face embedder")
        model = module.model.eval()
        return Recogniser(
            model,
            head,
            spec,
            target_layer,
            str(path),
            embedder=model,
            network=network,
            unseen_identities=module.unseen_identities(),
        )
    head.attach(module, layer or target_layer)
    return Recogniser(module.model.eval(), head, spec, target_layer, str(path), network=network)


def warn_other_network(configured: str, network: str | None, checkpoint: Any) -> None:
    """Say (one line) when ``model=`` was given on the command line but the checkpoint holds another network.

    The checkpoint's own network is used: its weights fit no other.
    """
    if network is None or network == configured:
        return
    try:
        chosen = any(o.split("=", 1)[0].lstrip("+~") == "model" for o in HydraConfig.get().overrides.task)
    except ValueError:  # no Hydra run (the Python API): nothing was chosen on a command line
        chosen = False
    if chosen:
        message = (
            f"checkpoint {checkpoint} holds a {network}, not a {configured}; explaining the {network} (drop model=)"
        )
        log.warning(message)
        print(f"warning: {message}", file=sys.stderr)


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
        same = (
            other.model.name == cfg.model.name
            and other.get("objective", {}).get("name") == cfg.objective.name
            and other.data.get("_target_") == cfg.data.get("_target_")
            and all(other.data.get(k) == cfg.data.get(k) for k in FACEPARTS_KEYS)
        )
        if same:
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)
