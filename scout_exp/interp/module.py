"""Interpretable face-recognition training (Yin et al., ICCV 2019; docs/method.md section 4) in Lightning.

One automatic-optimisation step per batch: a clean forward, an occluded forward when an
occluded-image term has weight, and the total loss of :func:`scout_exp.interp.losses.interp_total_loss`.
The optimiser is the ``optimizer=`` group (the experiment sets Adam with beta1 0.5, as docs/method.md
says). Batches may be:

- ``(x, y, landmarks, parts)`` (FaceParts with ``data.with_annotations=true``): the occluder covers
  the bounding box of one face part, drawn per batch (:func:`occlude_parts`);
- ``(x, y, landmarks)``: the 32x12 reference rectangle warped through each image's landmarks
  (:func:`occlude_with_landmarks`, landmarks in the input's pixel frame);
- ``(x, y)``: aligned crops (CASIA-WebFace 110x110 recrops resized to the input): every image's
  landmarks are taken to be the reference template scaled to the input size.

The test stage runs the face-recognition evaluation of :mod:`scout_exp.interp.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from scout_exp.checkpoint import load_weights, read_checkpoint
from scout_exp.data.faceparts_draw import PART_NAMES
from scout_exp.errors import UserError
from scout_exp.interp.evaluate import EvalCollector, log_peak_figure
from scout_exp.interp.losses import InterpLossWeights, interp_total_loss
from scout_exp.interp.occlusion import REFERENCE_LANDMARKS_110, occlude_parts, occlude_with_landmarks
from scout_exp.models import get_classifier
from scout_exp.models.casianet import InterpOutput
from scout_exp.training.module import ClassifierModule

VARIANTS: dict[str, InterpLossWeights] = {
    "base": InterpLossWeights(ce_clean=2.0, ce_occluded=0.0, filter=0.0, sad_clean=0.0, sad_occluded=0.0, fad=0.0),
    "sad": InterpLossWeights(ce_clean=2.0, ce_occluded=0.0, filter=100.0, sad_clean=1.0, sad_occluded=0.0, fad=0.0),
    "sad_fad": InterpLossWeights(),
}
"""Loss presets of the paper's three networks: base CNN, SAD only (with filter diversity), SAD + FAD."""

OCCLUSION_MODES = ("auto", "parts", "landmarks")
DEFAULT_PARTS = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth")


@runtime_checkable
class InterpNetwork(Protocol):
    """What the interpretable losses use of the network (as ``casianet_interp``'s ``CasiaNetInterp`` has it)."""

    @property
    def filter_weight(self) -> torch.Tensor: ...

    def forward_maps(self, x: torch.Tensor) -> InterpOutput: ...

    def classify(self, feature: torch.Tensor) -> torch.Tensor: ...


class InterpFRModule(ClassifierModule):
    """``casianet_interp`` trained with the interpretable losses; a :class:`ClassifierModule` otherwise.

    Takes the classifier's keyword arguments plus the options of ``configs/objective/interp.yaml``:
    ``variant`` (``base`` | ``sad`` | ``sad_fad``), ``weights`` (per-term overrides of the preset),
    ``n_invariant``, the occlusion options, ``base_ckpt`` (a base CASIA-Net checkpoint loaded with
    ``strict=False``, as the reference fine-tunes) and the evaluation options.
    """

    INIT_KEYS = ("init_from", "base_ckpt")

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        variant: str = "sad_fad",
        weights: dict[str, float] | None = None,
        n_invariant: int = 260,
        occlusion: str = "auto",
        occlusion_parts: Sequence[str] = DEFAULT_PARTS,
        base_ckpt: str | None = None,
        fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4),
        ranks: Sequence[int] = (1, 5),
        peak_frame: int = 96,
        peak_sign: str = "pos",
        align_peaks: bool = True,
        **classifier: Any,
    ) -> None:
        # ``classifier``: the other keyword arguments of ClassifierModule; init_from is applied here,
        # to the whole module, once it is built
        init_from = classifier.pop("init_from", None)
        super().__init__(model_name, num_classes, **classifier)
        self.save_hyperparameters(ignore=["optimizer"])
        self.hparams["init_from"] = init_from
        if not hasattr(self.model, "forward_maps"):
            raise UserError(
                f"objective=interp needs an interpretable model such as model=casianet_interp, got {model_name}"
            )
        if variant not in VARIANTS:
            raise UserError(f"unknown objective.variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if occlusion not in OCCLUSION_MODES:
            raise UserError(f"unknown objective.occlusion {occlusion!r}; choose one of {', '.join(OCCLUSION_MODES)}")
        preset = asdict(VARIANTS[variant])
        unknown = sorted(set(weights or {}) - set(preset))
        if unknown:
            raise UserError(f"unknown loss weight(s) {', '.join(unknown)}; known: {', '.join(preset)}")
        chosen = {k: float(v) for k, v in (weights or {}).items() if v is not None}
        self.loss_weights = InterpLossWeights(**{**preset, **chosen})
        features = get_classifier(self.model).in_features
        if not 0 < n_invariant <= features:
            raise UserError(f"n_invariant must be in [1, {features}], got {n_invariant}")
        bad = [p for p in occlusion_parts if p not in PART_NAMES]
        if bad or not occlusion_parts:
            raise UserError(
                f"occlusion_parts must name FaceParts parts ({', '.join(PART_NAMES)}); got {list(occlusion_parts)}"
            )
        self.part_labels = [PART_NAMES.index(p) + 1 for p in occlusion_parts]
        self.collector: EvalCollector | None = None
        self.test_results: dict[str, Any] = {}
        if base_ckpt:
            load_matching(self, base_ckpt)
        if init_from:
            load_weights(self, init_from)

    @property
    def network(self) -> InterpNetwork:
        """``model`` as an interpretable network; UserError when it lacks part of that interface."""
        if not isinstance(self.model, InterpNetwork):
            raise UserError(
                f"objective=interp needs an interpretable model such as model=casianet_interp, got "
                f"{type(self.model).__name__} (no forward_maps, classify or filter_weight)"
            )
        return self.model

    @property
    def needs_occlusion(self) -> bool:
        """Whether the loss has an occluded-image term."""
        w = self.loss_weights
        return bool(w.ce_occluded or w.sad_occluded or w.fad)

    def occlude(
        self,
        batch: Sequence[Any],
        generator: torch.Generator | None = None,
        part_index: int | Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Occluded copy of the batch's images (pixels set to -1, black in [-1, 1]) and the masks.

        ``part_index`` picks the part (an index into ``occlusion_parts``, for the whole batch, or
        one per image) for part occlusion; one random part for the batch when None. ``generator``
        drives the random draws (the part, or the rectangle's position for landmark occlusion).
        """
        x = batch[0]
        mode = self.hparams["occlusion"]
        if mode == "auto":
            mode = "parts" if len(batch) >= 4 else "landmarks"
        if mode == "parts":
            if len(batch) < 4:
                raise UserError("occlusion=parts needs part maps: use data=faceparts with data.with_annotations=true")
            if part_index is None:
                part_index = int(torch.randint(len(self.part_labels), (1,), generator=generator))
            n = len(self.part_labels)
            if isinstance(part_index, int):
                return occlude_parts(x, batch[3], [self.part_labels[part_index % n]])
            return occlude_parts(x, batch[3], [[self.part_labels[k % n]] for k in part_index])
        if len(batch) >= 3:
            landmarks = batch[2]
        else:
            scale = x.shape[-1] / 110.0
            landmarks = (REFERENCE_LANDMARKS_110 * scale).to(x.device).expand(x.shape[0], -1, -1)
        return occlude_with_landmarks(x, landmarks, generator=generator)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if bool((y < 0).any()):
            raise UserError(
                "this data module is an evaluation protocol without training labels; "
                "use train=false test=true ckpt_path=..."
            )
        network = self.network
        clean = network.forward_maps(x)
        occluded = network.forward_maps(self.occlude(batch)[0]) if self.needs_occlusion else None
        loss, terms = interp_total_loss(
            clean,
            y,
            conv_weight=network.filter_weight if self.loss_weights.filter else None,
            occluded=occluded,
            classify=network.classify,
            weights=self.loss_weights,
            n_invariant=self.hparams["n_invariant"],
        )
        self.train_acc(clean.logits, y)
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_acc", self.train_acc, prog_bar=True, on_step=False, on_epoch=True)
        for name, value in terms.items():
            self.log(f"train_{name}", value)
        return loss

    def _eval_step(self, batch: Sequence[Any], stage: str) -> None:
        self._log_accuracy(self(batch[0]), batch[1], stage)

    def _log_accuracy(self, logits: torch.Tensor, y: torch.Tensor, stage: str) -> None:
        """Loss and accuracy of the faces with a trained identity (protocol images have label -1)."""
        keep = y >= 0
        if not bool(keep.any()):
            return
        metric = self.val_acc if stage == "val" else self.test_acc
        metric(logits[keep], y[keep])
        self.log(f"{stage}_loss", F.cross_entropy(logits[keep], y[keep]), prog_bar=True, sync_dist=True)
        self.log(f"{stage}_acc", metric, prog_bar=True, on_step=False, on_epoch=True)

    def on_test_epoch_start(self) -> None:
        frame = self.hparams["peak_frame"]
        self.collector = EvalCollector(peak_frame=(frame, frame), sign=self.hparams["peak_sign"])

    def test_step(self, batch: Sequence[Any], batch_idx: int) -> None:
        assert self.collector is not None
        x, y = batch[0], batch[1]
        out = self.network.forward_maps(x)
        self._log_accuracy(out.logits, y, "test")
        landmarks = batch[2] if len(batch) >= 3 else None
        occluded_logits = None
        if bool((y >= 0).any()):
            # deterministic: part k % n on the k-th test face, a batch-seeded rectangle position
            generator = torch.Generator().manual_seed(batch_idx)
            per_image = list(range(self.collector.count, self.collector.count + len(y)))
            x_occ, _ = self.occlude(batch, generator=generator, part_index=per_image)
            occluded_logits = self.model(x_occ)
        self.collector.add(x, y, out.feature, out.masked_map, landmarks, occluded_logits)

    def on_test_epoch_end(self) -> None:
        assert self.collector is not None
        datamodule = getattr(self.trainer, "datamodule", None)
        protocol = getattr(datamodule, "evaluate_features", None)
        results = self.collector.compute(
            fars=self.hparams["fars"],
            ranks=self.hparams["ranks"],
            protocol=protocol,
            align=self.hparams["align_peaks"],
        )
        for key, value in results["metrics"].items():
            self.log(f"test_{key}", float(value))
        self.test_results = results
        self.collector = None

    def final_metrics(self, trainer: pl.Trainer, datamodule: Any, out_dir: str | Path) -> dict[str, Any]:
        """After a test stage: save and log the peak-location figure; the metrics for summary.json."""
        if not self.test_results:
            return {}
        title = f"{self.hparams['variant']}: d = {self.test_results['metrics']['peak_spread_d']:.1f}"
        path = log_peak_figure(self.test_results, Path(out_dir) / "figures" / "peaks.png", title, trainer.loggers)
        return {
            "variant": self.hparams["variant"],
            **{f"test_{k}": float(v) for k, v in self.test_results["metrics"].items()},
            "peak_figure": str(path),
        }


def load_matching(module: pl.LightningModule, path: str | Path) -> list[str]:
    """Load the tensors of a checkpoint whose names and shapes match ``module`` (``strict=False``,
    as the reference restores a base CASIA-Net into the interpretable one); return their names."""
    state = read_checkpoint(path).get("state_dict")
    if state is None:
        raise UserError(f"{path} holds no state_dict; is it a train.py checkpoint?")
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise UserError(
            f"no tensor of {path} matches the network (names and shapes); "
            "base_ckpt must be a model=casianet (or casianet_interp) checkpoint"
        )
    module.load_state_dict(matching, strict=False)
    return sorted(matching)
