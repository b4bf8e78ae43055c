"""Post-hoc hardness predictor: calibration split, frozen classifier, refusals, and the command line end to end."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset, TensorDataset

from scout_exp.data.datamodules import FaceDataModule
from scout_exp.errors import UserError
from scout_exp.hardness.posthoc import PosthocHardnessModule, state_digest
from scout_exp.training.module import ClassifierModule
from scout_exp.training.objectives import load_trained
from tests.conftest import TINY, run_dir, run_entry
from tests.test_hardness import tiny_model  # noqa: F401  (autouse: registers tiny_net)

N_CLASSES = 3
N_ITEMS = 60


class IndexedData(FaceDataModule):
    """Items whose first pixel is their own index, so a test can see which items a loader served."""

    def build(self) -> tuple[Dataset, np.ndarray, int]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N_ITEMS, 3, 8, 8, generator=g)
        x[:, 0, 0, 0] = torch.arange(N_ITEMS, dtype=torch.float32)
        labels = np.arange(N_ITEMS) % N_CLASSES
        return TensorDataset(x, torch.as_tensor(labels)), labels, N_CLASSES


def _data(**kw: object) -> IndexedData:
    options = dict(val_fraction=0.2, test_fraction=0.1, calibration_fraction=0.3, fit_split="calibration", batch_size=6)
    options.update(kw)
    data = IndexedData(**options)
    data.setup()
    return data


def _classifier_ckpt(tmp_path: Path, calibration_fraction: float | None = 0.3) -> Path:
    """A ClassifierModule checkpoint in a run folder whose config_resolved.yaml names its data options."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    module = ClassifierModule("tiny_net", N_CLASSES, target_layer="conv")
    with torch.no_grad():
        module.model.bn.running_mean.uniform_(-1, 1)  # non-default statistics: a train-mode forward would move them
    path = run / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    data = {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 0, "batch_size": 32}
    if calibration_fraction is not None:
        data["calibration_fraction"] = calibration_fraction
    (run / "config_resolved.yaml").write_text(yaml.safe_dump({"data": data}))
    return path


def _module(ckpt: Path, **kw: object) -> PosthocHardnessModule:
    options = dict(
        model_name="tiny_net", num_classes=N_CLASSES, target_layer="conv", hidden=8, classifier_ckpt=str(ckpt)
    )
    options.update(kw)
    return PosthocHardnessModule(**options)


class SeenItems(pl.Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.seen += batch[0][:, 0, 0, 0].long().tolist()
        assert not module.model.training and module.predictor.training


def _fit(module: PosthocHardnessModule, data: FaceDataModule, tmp_path: Path, callbacks: list) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def test_calibration_split_is_carved_from_training_only() -> None:
    plain, carved = _data(calibration_fraction=0.0, fit_split="train"), _data()
    for split in ("val", "test"):
        assert np.array_equal(plain.splits[split], carved.splits[split])
    train, calibration = carved.splits["train"], carved.splits["calibration"]
    assert len(calibration) == 18 and not set(train) & set(calibration)
    assert sorted([*train, *calibration]) == sorted(plain.splits["train"])
    assert np.bincount(calibration % N_CLASSES).tolist() == [6, 6, 6]  # stratified by identity
    assert "calibration" not in plain.splits
    with pytest.raises(UserError, match="calibration_fraction"):
        _data(calibration_fraction=0.8)
    with pytest.raises(UserError, match="fit_split"):
        _data(fit_split="val")


def test_predictor_sees_only_calibration_split_and_classifier_is_unchanged(tmp_path: Path) -> None:
    ckpt = _classifier_ckpt(tmp_path)
    module = _module(ckpt, trunk="separate")
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    predictor_before = {k: v.clone() for k, v in module.predictor.state_dict().items()}
    data = _data()
    seen = SeenItems()
    _fit(module, data, tmp_path, [seen])
    assert sorted(seen.seen) == sorted(data.splits["calibration"].tolist() * 2)  # every calibration item, each epoch
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical, BN statistics included
    assert state_digest(module.model) == module.classifier_digest
    assert any(not torch.equal(predictor_before[k], v) for k, v in module.predictor.state_dict().items())
    assert all(not p.requires_grad for p in module.model.parameters())


@pytest.mark.parametrize("target", ["hardness", "tcp"])
def test_target_losses(tmp_path: Path, target: str) -> None:
    module = _module(_classifier_ckpt(tmp_path), target=target)
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 0])
    z = torch.tensor([-2.0, 2.0])
    p = logits.softmax(1)[:, 0]
    s = torch.sigmoid(z)
    expected = ((1 - s) - p).square().mean() if target == "tcp" else -((1 - p) * s.log() + p * (1 - s).log()).mean()
    assert module.target_loss(z, logits, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_refusals(tmp_path: Path) -> None:
    ckpt = _classifier_ckpt(tmp_path)
    with pytest.raises(UserError, match="classifier_ckpt"):
        _fit(PosthocHardnessModule("tiny_net", N_CLASSES, target_layer="conv", hidden=8), _data(), tmp_path, [])
    with pytest.raises(UserError, match="target"):
        _module(ckpt, target="entropy")
    with pytest.raises(UserError, match="fit_split=calibration"):
        _fit(_module(ckpt), _data(fit_split="train"), tmp_path, [])
    other = _classifier_ckpt(tmp_path / "other", calibration_fraction=None)  # trained on the calibration images
    with pytest.raises(UserError, match="never sees the calibration split"):
        _fit(_module(other), _data(), tmp_path, [])


@pytest.mark.slow
def test_posthoc_command_line_end_to_end(tmp_path: Path) -> None:
    data = ("data.val_fraction=0.25", "data.test_fraction=0.0", "data.calibration_fraction=0.25")
    for folder in ("clf", "w", "post", "explain"):
        (tmp_path / folder).mkdir()
    result = run_entry("train.py", *TINY, *data, "logger=none", cwd=tmp_path / "clf")
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = run_dir(tmp_path / "clf") / "checkpoints" / "last.ckpt"
    wrong = run_entry(
        "train.py",
        *TINY,
        "head=hardness",
        "objective=hardness_posthoc",
        f"objective.classifier_ckpt={ckpt}",
        "logger=none",
        cwd=tmp_path / "w",
    )
    assert wrong.returncode == 2 and "error: post-hoc hardness training learns on a calibration split" in wrong.stderr
    result = run_entry(
        "train.py",
        *TINY,
        *data,
        "data.fit_split=calibration",
        "head=hardness",
        "objective=hardness_posthoc",
        f"objective.classifier_ckpt={ckpt}",
        "logger=none",
        cwd=tmp_path / "post",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = run_dir(tmp_path / "post")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["classifier_unchanged"] is True and summary["calibration_samples"] == 12
    assert summary["objective"] == "hardness_posthoc" and "fpr95_easiness" in summary and "aurc_doctor" in summary
    module, _ = load_trained(run / "checkpoints" / "last.ckpt")
    classifier = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in classifier.items())
    explained = run_entry(
        "explain.py",
        "head=hardness",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        *(o for o in TINY if o.startswith("data.") and "batch_size" not in o),
        "max_pairs=2",
        "logger=none",
        cwd=tmp_path / "explain",
    )
    assert explained.returncode == 0, explained.stderr[-2000:]
