"""Every config option composes; bad keys and options fail at start-up with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scout_exp.cli import CONFIG_DIR, check_overrides
from scout_exp.errors import UserError
from tests.conftest import run_entry

GROUPS = {
    "train": ["data", "model", "objective", "head", "optimizer", "callbacks", "logger", "trainer", "paths", "debug"],
    "explain": ["data", "model", "objective", "head", "attribution", "logger", "trainer", "paths", "debug"],
}
#: groups whose options each belong to one task (a training or an explanation experiment)
TASK_GROUPS = ["experiment", "hparams_search"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("primary", sorted(GROUPS))
def test_every_option_composes(primary: str) -> None:
    for group in GROUPS[primary]:
        for option in _options(group):
            cfg = check_overrides(primary, [f"{group}={option}"])
            assert cfg is not None, (group, option)


@pytest.mark.parametrize("group", TASK_GROUPS)
def test_every_task_option_composes_with_its_task(group: str) -> None:
    for option in _options(group):
        errors = []
        for primary in sorted(GROUPS):
            try:
                check_overrides(primary, [f"{group}={option}"])
                break
            except UserError as err:
                errors.append(str(err))
        else:
            pytest.fail(f"{group}={option} composes with no task: {errors}")


def test_unknown_option_names_valid_choices() -> None:
    with pytest.raises(UserError) as err:
        check_overrides("train", ["model=resnet5"])
    message = str(err.value)
    assert "unknown model 'resnet5'" in message and "resnet50" in message and "\n" not in message


def test_misspelt_key_names_valid_keys() -> None:
    with pytest.raises(UserError) as err:
        check_overrides("train", ["trainer.max_epoch=3"])
    message = str(err.value)
    assert "trainer.max_epoch" in message and "did you mean trainer.max_epochs" in message


def test_entry_point_reports_bad_option_in_one_line(tmp_path: Path) -> None:
    result = run_entry("train.py", "model=resnet5", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'resnet5'"), result.stderr


def test_head_hardness_selects_its_objective_and_a_mismatch_is_one_line(tmp_path: Path) -> None:
    assert check_overrides("train", ["head=hardness"]).objective.name == "hardness"
    assert check_overrides("explain", ["head=hardness"]).objective.name == "hardness"
    assert check_overrides("train", ["head=margin"]).objective.name == "ce"
    result = run_entry("train.py", "head=hardness", "objective=ce", "logger=none", cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "error: head=hardness is trained by objective=hardness, not objective=ce; "
        "drop objective= or pass objective=hardness"
    ), result.stderr


def test_auto_precision_follows_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16-mixed only on a CUDA GPU with bfloat16; CPUs train in float32 (emulated bf16 is slow)."""
    from scout_exp.config import auto_precision, compose_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compose_config("train", []).trainer.precision == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert compose_config("train", []).trainer.precision == "bf16-mixed"
    assert compose_config("train", ["trainer=cpu"]).trainer.precision == "32-true"
    assert auto_precision("gpu") == "bf16-mixed" and auto_precision("cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert auto_precision("auto") == "32-true"


# --- YAML and Python hold each default once: every option is instantiated where that is cheap ----------
#: (objective option, key): why its YAML value may differ from the constructor's default
DEFAULT_EXCEPTIONS = {
    ("interp", "weights"): "null weights mean the variant's preset, the constructor's None",
}
#: objective options that need another backbone than the default one
OBJECTIVE_MODELS = {"interp": "casianet_interp"}


def _same(a: object, b: object) -> bool:
    """YAML lists equal the constructor's tuples."""
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return norm(a) == norm(b)


@pytest.mark.parametrize("option", _options("objective"))
def test_every_objective_instantiates_and_agrees_with_its_constructor(option: str) -> None:
    """A YAML value restating a constructor default must equal it (trunk: shared vs "separate" was such a drift)."""
    import inspect

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from scout_exp.tasks.train import build_module

    model = OBJECTIVE_MODELS.get(option, "resnet18")
    cfg = check_overrides("train", [f"objective={option}", f"model={model}"])
    module = build_module(cfg, num_classes=50)
    assert type(module) is get_class(cfg.objective._target_)
    if "defaults" in OmegaConf.load(CONFIG_DIR / "objective" / f"{option}.yaml"):
        return  # a variant of another option (cosface of arcface) sets other values on purpose
    params = inspect.signature(type(module).__init__).parameters
    for key, value in OmegaConf.to_container(cfg.objective, resolve=True).items():
        default = params[key].default if key in params else inspect.Parameter.empty
        if default is inspect.Parameter.empty or (option, key) in DEFAULT_EXCEPTIONS:
            continue
        assert _same(value, default), f"objective={option}: {key} is {value!r} in YAML, {default!r} in Python"


def test_hardness_trunk_has_one_default() -> None:
    import inspect

    from scout_exp.hardness.module import HardnessModule

    assert inspect.signature(HardnessModule.__init__).parameters["trunk"].default is inspect.Parameter.empty
    assert check_overrides("train", ["objective=hardness"]).objective.trunk == "shared"


def _required_model_inputs(option: str, tmp_path: Path) -> list[str]:
    """What a model config leaves to the user (``???``): a module's class, an ONNX file."""
    if option == "module":
        return ["model.kwargs.net._target_=torchvision.models.resnet18"]
    if option == "onnx":
        from scout_exp.models import create_model
        from tests.face_model_files import write_onnx

        return [f"model.kwargs.weights={write_onnx(create_model('iresnet18', 8), tmp_path / 'm.onnx')}"]
    return []


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_instantiates_with_its_registered_facts(option: str, tmp_path: Path) -> None:
    """Each backbone config builds its model; its input spec and target layer come from the registration."""
    from omegaconf import OmegaConf

    from scout_exp.config import instantiate
    from scout_exp.data.transforms import InputSpec
    from scout_exp.models import create_model, resolve_model_config

    cfg = check_overrides("train", [f"model={option}", *_required_model_inputs(option, tmp_path)])
    model_cfg = resolve_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    spec = InputSpec.from_config(model_cfg["input"])
    kwargs = {k: v for k, v in (model_cfg.get("kwargs") or {}).items() if k not in ("pretrained", "weights_dir")}
    kwargs = {k: instantiate(v) if isinstance(v, dict) and "_target_" in v else v for k, v in kwargs.items()}
    model = create_model(model_cfg["name"], model_cfg.get("embedding") or 5, **kwargs)
    layer = model_cfg["target_layer"]
    assert layer is None or layer in dict(model.named_modules()), (option, layer)
    assert spec.size > 0


@pytest.mark.parametrize("option", _options("head") + _options("optimizer") + _options("attribution"))
def test_every_head_optimizer_and_method_instantiates(option: str) -> None:
    import inspect

    from omegaconf import OmegaConf
    from torchvision.models import resnet18

    from scout_exp.attribution import attribution_class, create_attribution, list_attributions
    from scout_exp.config import instantiate
    from scout_exp.heads import ConfidenceHead, create_head

    group = next(g for g in ("head", "optimizer", "attribution") if option in _options(g))
    cfg = check_overrides("explain" if group != "optimizer" else "train", [f"{group}={option}"])
    if group == "head":
        assert isinstance(create_head(cfg.head.name), ConfidenceHead)
    elif group == "optimizer":
        assert isinstance(instantiate(cfg.optimizer)(torch.nn.Linear(2, 2).parameters()), torch.optim.Optimizer)
    elif cfg.attribution.method in list_attributions():  # adapter methods live elsewhere
        kwargs = OmegaConf.to_container(cfg.attribution.kwargs, resolve=True)
        cls = attribution_class(cfg.attribution.method)
        create_attribution(
            cfg.attribution.method, resnet18(num_classes=3), "layer4" if cls.reads_layer else None, **kwargs
        )
        # the config restates the constructor's defaults: one source of truth for a method's options
        defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()}
        assert kwargs == {k: defaults[k] for k in kwargs}, option
