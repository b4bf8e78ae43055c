"""Check a W&B sweep file without a server: its structure, the command the agent would run, and
that Hydra composes the overrides of every setting it can produce.

The agent's command is built with wandb's own helpers (``create_sweep_command``,
``create_sweep_command_args``); the final macro substitution mirrors ``wandb_agent.Agent._command_run``
(each ``${name}`` item is replaced by the list wandb computes for it), which needs a live run to call.
The JSON-schema check of the ``sweeps`` package is not used: that package is unmaintained (2022) and
not installed; the structural rules below are the ones its schema states for the keys used here.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import yaml

from scout_exp.cli import check_overrides
from scout_exp.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = {"train.py": "train", "explain.py": "explain"}
METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read and check a sweep YAML; raise a one-line :class:`UserError` naming the first problem."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist; see configs/sweeps/")
    try:
        sweep = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(sweep, dict):
        raise UserError(f"{path} must hold a mapping with program, method, parameters and command")
    program = sweep.get("program")
    if program not in PROGRAMS:
        raise UserError(f"{path}: program must be one of {', '.join(PROGRAMS)}, not {program!r}")
    if sweep.get("method") not in METHODS:
        raise UserError(f"{path}: method must be one of {', '.join(METHODS)}, not {sweep.get('method')!r}")
    metric = sweep.get("metric")
    if metric is not None and (
        not isinstance(metric, dict)
        or "name" not in metric
        or metric.get("goal", "minimize") not in ("minimize", "maximize")
    ):
        raise UserError(f"{path}: metric needs a name and a goal of minimize or maximize")
    if sweep["method"] == "bayes" and metric is None:
        raise UserError(f"{path}: method bayes needs a metric to optimise")
    parameters = sweep.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise UserError(f"{path}: parameters must map each Hydra override key to its values")
    for name, spec in parameters.items():
        _check_parameter(path, sweep["method"], str(name), spec)
    command = sweep.get("command")
    if not isinstance(command, list) or "${args_no_hyphens}" not in command or "${program}" not in command:
        raise UserError(f"{path}: command must list ${{program}} and then ${{args_no_hyphens}} (Hydra overrides)")
    return sweep


def settings(sweep: dict[str, Any], limit: int = 64) -> list[dict[str, Any]]:
    """Parameter settings covering every listed value, and each distribution's ends (at most ``limit``)."""
    choices = {name: _candidates(spec) for name, spec in sweep["parameters"].items()}
    product = itertools.product(*choices.values())
    return [dict(zip(choices, combo)) for combo in itertools.islice(product, limit)]


def agent_command(sweep: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The argv ``wandb agent`` runs for one setting (interpreter ``python``, as the agent uses)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    macros: dict[str, list[str]] = sweep_utils.create_sweep_command_args(
        {"args": {k: {"value": v} for k, v in params.items()}}
    )
    macros.update(interpreter=["python"], program=[sweep["program"]], env=["/usr/bin/env"])
    argv: list[str] = []
    for item in sweep_utils.create_sweep_command(list(sweep["command"])):
        text = str(item)
        argv += list(macros.get(text[2:-1]) or []) if text.startswith("${") and text.endswith("}") else [text]
    return argv


def check_sweep(path: str | Path, limit: int = 64) -> list[list[str]]:
    """Compose the config of every setting's command with Hydra; return the commands (UserError on a bad one)."""
    sweep = load_sweep(path)
    config_name = PROGRAMS[sweep["program"]]
    commands = []
    for params in settings(sweep, limit):
        argv = agent_command(sweep, params)
        overrides = argv[argv.index(sweep["program"]) + 1 :]
        try:
            check_overrides(config_name, overrides)
        except UserError as err:
            raise UserError(f"{path}: setting {params} does not compose: {err}") from None
        commands.append(argv)
    return commands


def _check_parameter(path: Path, method: str, name: str, spec: Any) -> None:
    if not isinstance(spec, dict):
        raise UserError(f"{path}: parameter {name} must be a mapping (value, values, or a distribution)")
    if "value" in spec:
        return
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise UserError(f"{path}: parameter {name}: values must be a non-empty list")
        return
    if method == "grid":
        raise UserError(f"{path}: parameter {name}: a grid sweep needs value or values, not a distribution")
    distribution = spec.get("distribution", "uniform" if "min" in spec else None)
    if distribution not in DISTRIBUTIONS:
        raise UserError(f"{path}: parameter {name}: unknown distribution {distribution!r}")
    if distribution not in ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta") and not (
        "min" in spec and "max" in spec and spec["min"] < spec["max"]
    ):
        raise UserError(f"{path}: parameter {name}: distribution {distribution} needs min < max")


def _candidates(spec: dict[str, Any]) -> list[Any]:
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    if "min" in spec and "max" in spec:
        ends = [spec["min"], spec["max"]]
        distribution = spec.get("distribution", "uniform")
        if distribution in ("log_uniform", "q_log_uniform"):  # W&B: min and max are natural-log exponents
            return [math.exp(v) for v in ends]
        if distribution == "inv_log_uniform":
            return [math.exp(-v) for v in ends]
        return ends
    return [spec.get("mu", 0.0)]
