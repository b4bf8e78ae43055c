"""Verification explanations: which regions make a (probe, reference) pair similar, and which different.

For an embedder ``f`` (image -> descriptor) and a layer with activations ``A`` (K x h x w), the score
of the probe ``x_p`` is its cosine similarity to the *fixed* reference embedding,
``q(x_p) = <f(x_p), e_r> / ||f(x_p)||`` with ``e_r = f(x_r) / ||f(x_r)||`` (no gradient through
``e_r``). Its gradient x activation map (METHOD.md section 1, Eq. 10, with ``q`` in place of the
class logit), ``m_ij = sum_k dq/dA_kij * A_kij``, is kept signed: ``ReLU(m)`` marks the regions
that make the pair similar, ``ReLU(-m)`` those that make it different. Both directions are
explained (the reference against the fixed probe embedding too), in one forward/backward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from scout_exp.attribution.base import layer_gradients, resolve_layer, upsample  # noqa: E402
from scout_exp.attribution.gradxact import GradXAct  # noqa: E402
from scout_exp.errors import UserError  # noqa: E402
from scout_exp.io import save_figure, save_npz  # noqa: E402


@dataclass
class VerificationExplanation:
    """A batch of explained pairs; maps are signed, at the layer's resolution."""

    cosine: Tensor  # (B,) cos(f(x_p), f(x_r))
    distance: Tensor  # (B,) ||f(x_p) - f(x_r)||, the raw descriptors' Euclidean distance
    probe_map: Tensor  # (B, h, w) m for the probe against the fixed reference embedding
    reference_map: Tensor  # (B, h, w) m for the reference against the fixed probe embedding

    @staticmethod
    def similar(m: Tensor) -> Tensor:
        """Regions that raise the similarity: the positive part of a signed map."""
        return m.clamp(min=0)

    @staticmethod
    def different(m: Tensor) -> Tensor:
        """Regions that lower the similarity: the negative part of a signed map, as positive values."""
        return (-m).clamp(min=0)


class VerificationExplainer:
    """Similar/different evidence maps of a face-verification pair (module docstring)."""

    def __init__(self, embedder: nn.Module, target_layer: str | nn.Module | None = None) -> None:
        self.embedder = embedder
        self.layer_name, self.layer = resolve_layer(embedder, target_layer)
        self._combine = GradXAct(embedder, self.layer, clamp_negative=False).combine

    def explain(self, probe: Tensor, reference: Tensor) -> VerificationExplanation:
        """Explain each ``(probe[b], reference[b])`` pair in both directions."""
        if probe.shape != reference.shape:
            raise UserError(
                f"probe and reference batches differ in shape: {tuple(probe.shape)} vs {tuple(reference.shape)}"
            )
        batch = probe.shape[0]

        def cosine_to_partner(out: Tensor) -> Tensor:
            if out.dim() != 2:
                raise UserError(f"the embedder must output (B, D) descriptors, got shape {tuple(out.shape)}")
            unit = F.normalize(out, dim=1)
            partner = torch.cat([unit[batch:], unit[:batch]]).detach()
            return (unit * partner).sum(dim=1)

        lg = layer_gradients(self.embedder, self.layer, torch.cat([probe, reference]), cosine_to_partner)
        maps = self._combine(lg.activations, lg.gradients)[:, 0]
        descriptors = lg.outputs
        return VerificationExplanation(
            cosine=lg.targets[:batch, 0],
            distance=(descriptors[:batch] - descriptors[batch:]).norm(dim=1),
            probe_map=maps[:batch],
            reference_map=maps[batch:],
        )


def pair_record(e: VerificationExplanation, b: int, threshold: float | None) -> dict[str, Any]:
    """JSON-ready scores of pair ``b``: cosine, distance, decision, and each side's evidence masses."""
    record: dict[str, Any] = {"cosine": float(e.cosine[b]), "distance": float(e.distance[b])}
    if threshold is not None:
        record["distance_threshold"] = float(threshold)
        record["same_person"] = bool(e.distance[b] < threshold)
    for side, m in (("probe", e.probe_map[b]), ("reference", e.reference_map[b])):
        similar, different = float(e.similar(m).sum()), float(e.different(m).sum())
        total = similar + different
        record[side] = {
            "similar_mass": similar,
            "different_mass": different,
            "similar_share": similar / total if total > 0 else float("nan"),
        }
    return record


def save_verification_figure(
    path: Path, images: Sequence[np.ndarray], maps: Sequence[np.ndarray], labels: Sequence[str], title: str
) -> Path:
    """One row per image (probe, reference): the image, its similar (red) and different (blue) evidence,
    and the signed map; ``maps`` are signed, at image size, on one colour scale per row.
    """
    fig, axes = plt.subplots(len(images), 4, figsize=(8.4, 2.3 * len(images)), squeeze=False)
    for r, (image, m, label) in enumerate(zip(images, maps, labels)):
        scale = float(np.abs(m).max()) or 1.0
        axes[r, 0].imshow(image)
        axes[r, 0].set_title(label, fontsize=7)
        for c, (part, colour, name) in enumerate(
            ((np.clip(m, 0, None), (0.85, 0.1, 0.1), "similar"), (np.clip(-m, 0, None), (0.1, 0.3, 0.95), "different")),
            start=1,
        ):
            overlay = np.zeros((*part.shape, 4))
            overlay[..., :3] = colour
            overlay[..., 3] = 0.85 * part / scale
            axes[r, c].imshow(image)
            axes[r, c].imshow(overlay)
            axes[r, c].set_title(f"{name} ({part.sum() / (np.abs(m).sum() or 1.0):.0%})", fontsize=8)
        axes[r, 3].imshow(image.mean(axis=2), cmap="gray", vmin=0, vmax=255)
        axes[r, 3].imshow(m / scale, cmap="bwr_r", vmin=-1, vmax=1, alpha=0.6)
        axes[r, 3].set_title("signed map", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def explain_pairs(
    explainer: VerificationExplainer,
    dataset: Any,
    out_dir: Path,
    threshold: float | None = None,
    batch_size: int = 16,
    max_figures: int = 16,
    save_maps: bool = False,
) -> list[dict[str, Any]]:
    """Explain every pair of a :class:`scout_exp.explain.pairs.PairDataset`; write figures (and maps)."""
    missing = [p.name for p in dataset.pairs if p.image_2 is None]
    if missing:
        raise UserError(f"mode=verify needs two images per pair; {', '.join(missing[:3])} has one")
    device = next(explainer.embedder.parameters(), torch.empty(0)).device
    records = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        x1, x2 = batch["x1"].to(device), batch["x2"].to(device)
        e = explainer.explain(x1, x2)
        size = tuple(x1.shape[-2:])
        probe_maps = upsample(e.probe_map[:, None], size)[:, 0].float().cpu().numpy()
        ref_maps = upsample(e.reference_map[:, None], size)[:, 0].float().cpu().numpy()
        for b, index in enumerate(batch["index"].tolist()):
            pair = dataset.pairs[index]
            record = {
                "pair": pair.name,
                "images": [str(pair.image_1), str(pair.image_2)],
                **pair_record(e, b, threshold),
            }
            if index < max_figures:
                images = [dataset.preprocess.invert(x1[b]), dataset.preprocess.invert(x2[b])]
                verdict = ""
                if "same_person" in record:
                    verdict = (
                        f", {'same person' if record['same_person'] else 'different people'} (threshold {threshold:g})"
                    )
                title = (
                    f"{pair.name}: cosine {record['cosine']:.3f}, distance {record['distance']:.3f}{verdict}; "
                    f"gradient x activation at {explainer.layer_name}"
                )
                labels = [f"probe: {Path(str(pair.image_1)).name}", f"reference: {Path(str(pair.image_2)).name}"]
                name = f"figures/{pair.name}_verify.png"
                save_verification_figure(out_dir / name, images, [probe_maps[b], ref_maps[b]], labels, title)
                record["figure"] = name
            if save_maps:
                name = f"maps/{pair.name}_verify.npz"
                save_npz(out_dir / name, probe=probe_maps[b], reference=ref_maps[b])
                record["maps"] = name
            records.append(record)
    return records
