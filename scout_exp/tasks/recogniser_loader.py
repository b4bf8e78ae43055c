"""The one recogniser loader: a checkpoint, pretrained weights, or a run on a part-annotated data set
(e.g. FaceParts) trained on demand become the model, its confidence head and its input spec.

An embedding network (model config ``embedding: <size>``, e.g. the face descriptor) or the pooled
features of a classifier become a recogniser of identities with a gallery (config ``gallery``):
:class:`scout_exp.models.gallery.GalleryClassifier` gives scaled-cosine class logits, so SCOUT's
class, counter-class and confidence maps apply unchanged. ``mode=verify`` uses the embedder alone.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from omegaconf import DictConfig
from torch import nn

from scout_exp.config import instantiate, to_container
from scout_exp.data.transforms import Preprocess
from scout_exp.errors import UserError
from scout_exp.explain.faces import enrol_gallery, has_gallery
from scout_exp.heads import ConfidenceHead, create_head
from scout_exp.models import split_classifier
from scout_exp.tasks.checkpoint_network import from_checkpoint, warn_other_network
from scout_exp.tasks.pretrained import from_weights
from scout_exp.tasks.recogniser import Recogniser
from scout_exp.tasks.train_on_demand import find_or_train

log = logging.getLogger(__name__)


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
