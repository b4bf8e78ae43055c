"""Hardness predictor: losses, the alternating joint step, checkpoints, confidence metrics (docs/method.md section 2)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from scout_exp.checkpoint import OBJECTIVE_KEY
from scout_exp.errors import UserError
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.hardness.losses import (
    bce_hardness_loss,
    classifier_loss,
    linear_hardness_loss,
    predictor_loss,
    true_class_probability,
    weighted_cross_entropy,
)
from scout_exp.hardness.metrics import (
    aurc,
    error_detection_auroc,
    evaluate_confidence,
    oracle_aurc,
    risk_coverage_curve,
)
from scout_exp.hardness.module import HardnessModule
from scout_exp.heads.hardness import HardnessHead
from scout_exp.models import registry
from scout_exp.training.module import ClassifierModule
from scout_exp.training.objectives import RecordObjective, load_trained

N_CLASSES = 3


class TinyNet(nn.Module):
    """conv -> BN -> ReLU -> pool -> fc: the registry contract (``fc`` on a flat feature) in miniature."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._MODELS, "tiny_net", registry.ModelInfo(lambda num_classes: TinyNet(num_classes)))


def _module(**kw: object) -> HardnessModule:
    options = dict(
        model_name="tiny_net",
        num_classes=N_CLASSES,
        trunk="separate",
        target_layer="conv",
        scheduler="none",
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        hidden=8,
    )
    options.update(kw)
    return HardnessModule(**options)


def _loader(n: int = 16, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = torch.arange(n) % N_CLASSES
    return DataLoader(TensorDataset(x, y), batch_size=batch)


def _trainer(tmp_path: Path, callbacks: list[pl.Callback] | None = None, batches: int = 1) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks or [],
        default_root_dir=tmp_path,
    )


# ---------------------------------------------------------------- losses against hand computations

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
LABELS = torch.tensor([0, 2])


def _hand_p_true() -> list[float]:
    return [math.exp(r[y]) / sum(math.exp(v) for v in r) for r, y in zip(LOGITS.tolist(), LABELS.tolist())]


def test_weighted_cross_entropy_matches_hand_computation() -> None:
    s = torch.tensor([0.25, 0.8])
    expected = -(0.25 * math.log(_hand_p_true()[0]) + 0.8 * math.log(_hand_p_true()[1])) / 2
    assert weighted_cross_entropy(LOGITS, LABELS, s).item() == pytest.approx(expected, rel=1e-6)
    plain = -(math.log(_hand_p_true()[0]) + math.log(_hand_p_true()[1])) / 2
    assert classifier_loss("unweighted", LOGITS, LABELS, s).item() == pytest.approx(plain, rel=1e-6)
    assert true_class_probability(LOGITS, LABELS).tolist() == pytest.approx(_hand_p_true(), rel=1e-6)


def test_predictor_losses_match_hand_computation_and_detach_p() -> None:
    z = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    p = torch.tensor([0.9, 0.3, 0.05], requires_grad=True)
    s = [1 / (1 + math.exp(-v)) for v in z.tolist()]
    bce = -sum(pi * math.log(1 - si) + (1 - pi) * math.log(si) for pi, si in zip(p.tolist(), s)) / 3
    linear = sum(1 - (1 - pi) * si - (1 - si) * pi for pi, si in zip(p.tolist(), s)) / 3
    loss = bce_hardness_loss(z, p)
    assert loss.item() == pytest.approx(bce, rel=1e-6)
    assert linear_hardness_loss(z, p).item() == pytest.approx(linear, rel=1e-6)
    assert predictor_loss("linear", z, p).item() == pytest.approx(linear, rel=1e-6)
    loss.backward()
    assert p.grad is None and z.grad is not None  # the classifier's p is a fixed target


def test_unknown_loss_names_are_user_errors() -> None:
    with pytest.raises(UserError, match="classifier_loss"):
        classifier_loss("focal", LOGITS, LABELS, torch.ones(2))
    with pytest.raises(UserError, match="predictor_loss"):
        predictor_loss("mse", torch.zeros(2), torch.ones(2))
    with pytest.raises(UserError, match="trunk"):
        _module(trunk="both")


# ---------------------------------------------------------------- joint training step


class Snapshots(pl.Callback):
    """Parameters of classifier and predictor before each optimiser step and after the batch."""

    def __init__(self) -> None:
        self.states: list[dict[str, dict[str, torch.Tensor]]] = []

    def _take(self, module: HardnessModule) -> None:
        self.states.append(
            {
                part: {k: v.detach().clone() for k, v in getattr(module, part).named_parameters()}
                for part in ("model", "predictor")
            }
        )

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: HardnessModule, optimizer: object) -> None:
        self._take(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: HardnessModule, *args: object) -> None:
        self._take(pl_module)


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


@pytest.mark.parametrize("trunk", ["separate", "shared"])
def test_one_step_updates_each_network_only_in_its_own_step(tmp_path: Path, trunk: str) -> None:
    module = _module(trunk=trunk)
    snaps = Snapshots()
    _trainer(tmp_path, [snaps]).fit(module, train_dataloaders=_loader())
    before, after_classifier, after_predictor = snaps.states  # classifier step, then predictor step
    assert _changed(before["model"], after_classifier["model"]) == set(before["model"])
    assert not _changed(before["predictor"], after_classifier["predictor"])
    assert not _changed(after_classifier["model"], after_predictor["model"])
    assert _changed(after_classifier["predictor"], after_predictor["predictor"]) == set(before["predictor"])
    assert (trunk == "separate") == any(k.startswith("trunk.") for k in before["predictor"])


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("trunk", ["separate", "shared"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path: Path, trunk: str) -> None:
    module = _module(trunk=trunk, predictor_loss="linear")
    trainer = _trainer(tmp_path, [RecordObjective("hardness")], batches=2)
    trainer.fit(module, train_dataloaders=_loader())
    path = tmp_path / "hardness.ckpt"
    trainer.save_checkpoint(path)
    loaded, objective = load_trained(path)
    assert objective == "hardness" and isinstance(loaded, HardnessModule)
    assert loaded.hparams.trunk == trunk and loaded.hparams.predictor_loss == "linear"
    x = torch.randn(4, 3, 8, 8)
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(x), loaded(x))
        assert torch.equal(module._forward_both(x)[1], loaded._forward_both(x)[1])


def _classifier_ckpt(path: Path, num_classes: int = N_CLASSES, model_name: str = "tiny_net") -> ClassifierModule:
    classifier = ClassifierModule(model_name, num_classes, target_layer="conv")
    with torch.no_grad():
        for p in classifier.parameters():
            p.normal_()
    record = {"name": "ce", "target": "scout_exp.training.module.ClassifierModule"}
    torch.save(
        {
            "state_dict": classifier.state_dict(),
            "hyper_parameters": dict(classifier.hparams),
            OBJECTIVE_KEY: record,
            "pytorch-lightning_version": pl.__version__,
        },
        path,
    )
    return classifier


def test_classifier_ckpt_initialises_classifier_and_separate_trunk(tmp_path: Path) -> None:
    classifier = _classifier_ckpt(tmp_path / "c.ckpt")
    module = _module(classifier_ckpt=str(tmp_path / "c.ckpt"))
    for k, v in classifier.model.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], v)
        if not k.startswith("fc."):
            assert torch.equal(module.predictor.trunk.state_dict()[k], v)


def test_init_from_takes_a_hardness_or_a_classifier_checkpoint(tmp_path: Path) -> None:
    classifier = _classifier_ckpt(tmp_path / "c.ckpt")
    from_classifier = _module(init_from=str(tmp_path / "c.ckpt"))
    assert torch.equal(from_classifier.model.fc.weight, classifier.model.fc.weight)
    torch.save(
        {
            "state_dict": from_classifier.state_dict(),
            "hyper_parameters": dict(from_classifier.hparams),
            OBJECTIVE_KEY: {"name": "hardness", "target": "scout_exp.hardness.module.HardnessModule"},
        },
        tmp_path / "h.ckpt",
    )
    whole = _module(init_from=str(tmp_path / "h.ckpt"))
    for k, v in from_classifier.state_dict().items():
        assert torch.equal(whole.state_dict()[k], v)
    with pytest.raises(UserError, match="is a hardness checkpoint"):
        _module(classifier_ckpt=str(tmp_path / "h.ckpt"))


def test_mismatched_or_wrong_checkpoints_are_refused_in_one_line(tmp_path: Path) -> None:
    _classifier_ckpt(tmp_path / "five.ckpt", num_classes=5)
    with pytest.raises(UserError, match="does not match") as err:
        _module(classifier_ckpt=str(tmp_path / "five.ckpt"))
    assert "\n" not in str(err.value)
    _classifier_ckpt(tmp_path / "r18.ckpt", model_name="resnet18")
    with pytest.raises(UserError, match="resnet18 classifier but model=tiny_net"):
        _module(classifier_ckpt=str(tmp_path / "r18.ckpt"))
    classifier, _ = load_trained(tmp_path / "five.ckpt")
    with pytest.raises(UserError, match="needs a checkpoint of `train.py objective=hardness`"):
        HardnessHead().attach(classifier)
    with pytest.raises(UserError, match="does not exist"):
        load_trained(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "old.ckpt")
    with pytest.raises(UserError, match="records no training objective"):
        load_trained(tmp_path / "old.ckpt")


# ---------------------------------------------------------------- metrics


def test_auroc_and_aurc_match_hand_computation() -> None:
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = torch.tensor([1, 1, 0, 1, 0]).bool()
    # errors at 0.7 (below 2 of 3 hits) and 0.5 (below all 3): 5 of 6 (error, hit) pairs ordered
    assert error_detection_auroc(conf, correct) == pytest.approx(5 / 6)
    # selective risk at k = 1..5: 0, 0, 1/3, 1/4, 2/5
    assert aurc(conf, correct) == pytest.approx((1 / 3 + 1 / 4 + 2 / 5) / 5)
    assert oracle_aurc(correct) == pytest.approx((1 / 4 + 2 / 5) / 5)
    # ties are kept or rejected together: points at coverage 1/3 (risk 0) and 1 (risk 1/3)
    coverage, risk = risk_coverage_curve(torch.tensor([0.9, 0.5, 0.5]), torch.tensor([1, 1, 0]).bool())
    np.testing.assert_allclose(coverage, [1 / 3, 1.0])
    np.testing.assert_allclose(risk, [0.0, 1 / 3])
    assert aurc(torch.tensor([0.9, 0.5, 0.5]), torch.tensor([1, 1, 0]).bool()) == pytest.approx(2 / 9)
    assert math.isnan(error_detection_auroc(conf, torch.ones(5).bool()))


def test_evaluate_confidence_scores_and_softmax_ece() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]])
    labels = torch.tensor([0, 1])  # first right (confidence 0.9), second wrong (confidence 0.7)
    report = evaluate_confidence(probs.log(), labels, {"easiness": torch.tensor([0.2, 0.6])})
    m = report.metrics
    assert m["accuracy"] == 0.5 and m["errors"] == 1 and m["samples"] == 2
    assert m["ece_softmax"] == pytest.approx(0.5 * (1 - 0.9) + 0.5 * (0.7 - 0.0), rel=1e-5)
    assert m["auroc_softmax"] == pytest.approx(1.0) and m["auroc_easiness"] == pytest.approx(0.0)
    assert m["aurc_softmax"] == pytest.approx(0.25) and m["aurc_easiness"] == pytest.approx(0.75)
    assert set(report.curves) == {"softmax", "max_logit", "certainty", "prob_gap", "doctor", "easiness"}
    all_right = evaluate_confidence(probs.log(), torch.tensor([0, 0]))
    assert all_right.metrics["auroc_softmax"] is None and all_right.metrics["aurc_softmax"] == 0.0


def test_final_metrics_writes_figure_and_reports_the_three_scores(tmp_path: Path) -> None:
    module = _module(trunk="shared")
    loader = _loader(n=24)
    logged: list[str] = []
    logger = SimpleNamespace(log_image=lambda key, images: logged.append(key))
    trainer = SimpleNamespace(is_global_zero=True, loggers=[logger])
    result = module.final_metrics(trainer, SimpleNamespace(val_dataloader=lambda: loader), tmp_path)
    assert (tmp_path / "figures" / "risk_coverage.png").stat().st_size > 0 and logged == ["risk_coverage"]
    logits, labels, hardness = module.collect_outputs(loader)
    correct = logits.argmax(1) == labels
    assert result["val_acc"] == pytest.approx(correct.float().mean().item())
    assert result["confidence_errors"] == int((~correct).sum()) and result["confidence_split"] == "val"
    assert result["auroc_easiness"] == pytest.approx(error_detection_auroc(1 - hardness, correct))
    assert result["aurc_easiness"] == pytest.approx(aurc(1 - hardness, correct))
    assert {"auroc_softmax", "auroc_certainty", "aurc_softmax", "aurc_certainty", "ece_softmax"} <= set(result)


# ---------------------------------------------------------------- explainer hook-up and config


@pytest.mark.parametrize("trunk", ["separate", "shared"])
def test_hardness_head_gives_the_easiness_confidence(trunk: str) -> None:
    module = _module(trunk=trunk).eval()
    x = torch.randn(2, 3, 8, 8)
    head = HardnessHead()
    head.attach(module, "conv")
    explainer = ScoutExplainer(module.model, attribution="gradxact", target_layer="conv", head=head)
    explanation = explainer.explain(x)
    with torch.no_grad():
        logits, z = module._forward_both(x)
    torch.testing.assert_close(explanation.confidence, 1 - torch.sigmoid(z))
    torch.testing.assert_close(explanation.probs, logits.softmax(1))
    assert explanation.confidence_map.shape == explanation.class_map.shape == (2, 8, 8)
    plain = ScoutExplainer(module.model, attribution="gradxact", target_layer="conv").explain(x)
    torch.testing.assert_close(explanation.class_map, plain.class_map)  # same class maps as the bare classifier


def test_head_config_builds_the_module() -> None:
    from scout_exp.cli import check_overrides
    from scout_exp.tasks.train import build_module

    cfg = check_overrides("train", ["head=hardness", "model=resnet18"])
    module = build_module(cfg, num_classes=4)
    assert isinstance(module, HardnessModule) and module.hparams.trunk == "shared"
    assert module.predictor.trunk is None and module.model.fc.out_features == 4
