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
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


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
