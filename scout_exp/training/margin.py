"""A face embedder trained with a margin-based softmax (ArcFace or CosFace) on FaceParts.

The backbone's identity layer ``fc`` becomes the embedding layer (features -> ``embedding_size``);
a :class:`MarginSoftmax` head holds one L2-normalised weight per *training* identity. The last
``heldout_identities`` identities of the data are never trained on (their images are dropped from
every training batch): the verification ROC, TAR@FAR and EER in ``summary.json`` are measured on
all pairs of their images (``eval_split``), i.e. on people the network has never seen
(docs/verification.md). ``val_acc`` is the closed-set accuracy on the training identities' val
images (arg max cosine to the class weights), the quantity the checkpoint callback monitors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scout_exp.checkpoint import load_weights
from scout_exp.errors import UserError
from scout_exp.evaluation.verification import eer, tar_at_far, verification_roc
from scout_exp.io import save_figure
from scout_exp.models import create_model
from scout_exp.plotting import pyplot
from scout_exp.training.module import ClassifierModule

LOSSES = ("arcface", "cosface")
#: all-pairs verification uses at most this many faces (the first ones in order)
MAX_FACES = 4000


class MarginSoftmax(nn.Module):
    """Margin-based softmax cross-entropy on L2-normalised embeddings and class weights.

    With ``cos_j = <e / |e|, W_j / |W_j|>`` the logits are ``s cos_j`` for ``j != y`` and, for the
    true class: ArcFace (Deng et al., CVPR 2019, Eq. 3) ``s cos(theta_y + m)``; CosFace (Wang et
    al., CVPR 2018, Eq. 4) ``s (cos_y - m)``. ArcFace's ``cos(theta + m)`` stops decreasing past
    ``theta = pi - m``; there, as in the authors' code, the logit is ``cos_y - m sin(m)`` instead,
    which keeps it monotonic in theta.
    """

    def __init__(
        self, embedding_size: int, num_classes: int, loss: str = "arcface", scale: float = 64.0, margin: float = 0.5
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise UserError(f"unknown margin loss {loss!r}; choose one of: {', '.join(LOSSES)}")
        if scale <= 0 or margin < 0:
            raise UserError(f"margin softmax needs scale > 0 and margin >= 0, got scale={scale}, margin={margin}")
        self.loss, self.scale, self.margin = loss, float(scale), float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)

    def cosines(self, embeddings: Tensor) -> Tensor:
        """(B, C) cosines of the embeddings to every class weight."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """(B, C) float32 margin logits (class docstring).

        Computed in float32 with autocast off, also inside a bf16-mixed run: at scale s = 64 a
        bfloat16 cosine (8 bits of mantissa) would move a logit by up to 0.25.
        """
        with torch.autocast(embeddings.device.type, enabled=False):
            return self._logits(embeddings.float(), labels)

    def _logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cos = self.cosines(embeddings).clamp(-1.0, 1.0)
        true = cos.gather(1, labels[:, None])
        if self.loss == "arcface":
            m = self.margin
            sin = (1.0 - true.pow(2)).clamp(min=0).sqrt()
            shifted = true * math.cos(m) - sin * math.sin(m)
            shifted = torch.where(true > math.cos(math.pi - m), shifted, true - m * math.sin(m))
        else:
            shifted = true - self.margin
        return self.scale * cos.scatter(1, labels[:, None], shifted)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of the margin logits."""
        return F.cross_entropy(self.logits(embeddings, labels), labels)


class MarginEmbedderModule(ClassifierModule):
    """Backbone + embedding layer trained with :class:`MarginSoftmax` (module docstring)."""

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        loss: str = "arcface",
        scale: float = 64.0,
        margin: float = 0.5,
        embedding_size: int = 128,
        heldout_identities: int = 10,
        eval_split: str = "test",
        fars: Sequence[float] = (1e-1, 1e-2, 1e-3),
        **classifier: Any,
    ) -> None:
        if not 2 <= heldout_identities <= num_classes - 2:
            raise UserError(
                f"heldout_identities must leave >= 2 identities to train on and hold >= 2 out, got "
                f"{heldout_identities} of {num_classes} (set objective.heldout_identities or data.num_identities)"
            )
        if eval_split not in ("val", "test"):
            raise UserError(f"eval_split must be val or test, got {eval_split!r}")
        # ``classifier``: the other keyword arguments of ClassifierModule; init_from is applied here,
        # to the whole module (margin head included), once it is built
        init_from = classifier.pop("init_from", None)
        self.num_train = num_classes - heldout_identities
        super().__init__(model_name, self.num_train, **classifier)
        self.save_hyperparameters(ignore=["optimizer"])
        self.model = create_model(model_name, num_classes=embedding_size, **(classifier.get("model_kwargs") or {}))
        self.margin_head = MarginSoftmax(embedding_size, self.num_train, loss, scale, margin)
        self._heldout: dict[str, list[tuple[Tensor, Tensor]]] = {"val": [], "test": []}
        if init_from:
            load_weights(self, init_from)

    def unseen_identities(self) -> list[int]:
        """The identities this embedder never trained on (the last ``heldout_identities`` of the data)."""
        return list(range(self.num_train, int(self.hparams["num_classes"])))

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch[0], batch[1]
        keep = y < self.num_train
        if not keep.any():
            return None
        loss = self.margin_head(self.model(x[keep]), y[keep])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch: Sequence[Tensor], stage: str) -> None:
        x, y = batch[0], batch[1]
        emb = self.model(x)
        known = y < self.num_train
        if known.any():
            metric = self.val_acc if stage == "val" else self.test_acc
            metric(self.margin_head.cosines(emb[known]), y[known])
            self.log(f"{stage}_loss", self.margin_head(emb[known], y[known]), prog_bar=True)
            self.log(f"{stage}_acc", metric, prog_bar=True, on_step=False, on_epoch=True)
        if (~known).any():
            self._heldout[stage].append((emb[~known].detach().cpu(), y[~known].cpu()))

    def _log_verification(self, stage: str) -> None:
        found = self._heldout[stage]
        self._heldout[stage] = []
        if not found:
            return
        emb, y = torch.cat([e for e, _ in found]), torch.cat([t for _, t in found])
        if len(torch.unique(y)) < 2 or len(y) == len(torch.unique(y)):
            return
        scores, same = all_pairs(emb, y)
        self.log(f"{stage}_eer", eer(scores, same))
        self.log(f"{stage}_tar_far1e-2", tar_at_far(scores, same, (1e-2,))[1e-2])

    def on_validation_epoch_end(self) -> None:
        self._log_verification("val")

    def on_test_epoch_end(self) -> None:
        self._log_verification("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.make_optimizer(list(self.model.parameters()) + list(self.margin_head.parameters()))
        schedule = self.schedule(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": schedule} if schedule else optimizer

    @torch.no_grad()
    def final_metrics(self, trainer: pl.Trainer, datamodule: Any, out_dir: str | Path) -> dict[str, Any]:
        """Verification on the held-out identities' images of ``eval_split``: ROC figure, TAR@FAR, EER."""
        split = self.hparams["eval_split"]
        part_data = datamodule.part_data
        if part_data is None:
            raise UserError(
                "a margin-softmax embedder measures verification on held-out identities of a part-annotated data "
                "set: use data=faceparts"
            )
        indices = [int(i) for i in datamodule.splits[split] if part_data.identity_of(int(i)) >= self.num_train]
        indices = indices[:MAX_FACES]
        if not indices:
            raise UserError(f"the {split} split holds no image of a held-out identity; raise data.{split}_fraction")
        self.model.eval()
        device = next(self.model.parameters()).device
        emb, labels_list = [], []
        for start in range(0, len(indices), datamodule.batch_size):
            items = [datamodule.dataset[i] for i in indices[start : start + datamodule.batch_size]]
            emb.append(self.model(torch.stack([it[0] for it in items]).to(device)).cpu())
            labels_list += [int(it[1]) for it in items]
        scores, same = all_pairs(torch.cat(emb), torch.tensor(labels_list))
        if not same.any():
            raise UserError(
                f"the {split} split holds no two images of one held-out identity; raise data.images_per_identity "
                f"or data.{split}_fraction"
            )
        fars = [float(f) for f in self.hparams["fars"]]
        fpr, tpr, _ = verification_roc(scores, same)
        figure = save_roc_figure(Path(out_dir) / "figures" / "verification_roc.png", fpr, tpr, self.hparams["loss"])
        return {
            "verification": {
                "split": split,
                "identities": sorted({int(t) for t in labels_list}),
                "faces": len(labels_list),
                "n_genuine": int(same.sum()),
                "n_impostor": int((~same).sum()),
                **{f"tar@far={far:g}": tar for far, tar in tar_at_far(scores, same, fars).items()},
                "eer": eer(scores, same),
                "chance_eer": 0.5,
                "roc_figure": str(figure.relative_to(out_dir)),
            }
        }


def all_pairs(embeddings: Tensor, labels: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and same-identity labels of every pair i < j (float64)."""
    f = F.normalize(embeddings.double(), dim=1)
    i, j = torch.triu_indices(len(labels), len(labels), offset=1)
    return (f[i] * f[j]).sum(dim=1).numpy(), (labels[i] == labels[j]).numpy()


def save_roc_figure(path: Path, fpr: np.ndarray, tpr: np.ndarray, label: str) -> Path:
    """ROC (TAR against FAR, log FAR axis) of held-out verification pairs, with the chance diagonal."""
    fig, ax = pyplot().subplots(figsize=(4, 3.2))
    ax.plot(np.clip(fpr, 1e-5, 1), tpr, label=label)
    grid = np.logspace(-5, 0, 50)
    ax.plot(grid, grid, "k:", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("FAR")
    ax.set_ylabel("TAR")
    ax.set_title("verification, held-out identities", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
