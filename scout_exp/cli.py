"""Entry-point plumbing shared by ``train.py`` and ``explain.py``.

Hydra composes the config; before that, single runs are composed once more here so that a
misspelt key or unknown option becomes one line naming it and the valid choices (Hydra's own
message is several lines and names no valid keys). User errors inside a task exit with status 2;
in a multirun a failing job is recorded in its ``summary.json`` and the sweep goes on.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from scout_exp.config import CONFIG_DIR, compose_config
from scout_exp.errors import UserError
from scout_exp.io import save_json

ROOT = Path(__file__).resolve().parents[1]
Task = Callable[[DictConfig], dict[str, Any]]
log = logging.getLogger(__name__)
_failed_jobs: list[str] = []


def main(config_name: str, task: Task | str) -> None:
    """Compose ``configs/<config_name>.yaml`` with the command line and run ``task`` on it.

    ``task`` may be a dotted path (``"scout_exp.tasks.train.train"``): it is imported only after the
    command line has been checked, so a bad option fails in a second, before torch and Lightning load.
    """
    os.environ.setdefault("PROJECT_ROOT", str(ROOT))
    args = sys.argv[1:]
    if not any(a.startswith("-") for a in args):  # -m, --help, --cfg: Hydra handles those itself
        try:
            check_overrides(config_name, args)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    run = hydra.utils.get_method(task) if isinstance(task, str) else task

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def _hydra_main(cfg: DictConfig) -> float | None:
        return run_task(run, cfg)

    _hydra_main()
    if _failed_jobs:
        print(f"error: {len(_failed_jobs)} job(s) failed: {'; '.join(_failed_jobs)}", file=sys.stderr)
        sys.exit(1)


def check_overrides(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose the config with ``overrides``; raise a one-line :class:`UserError` on a bad one."""
    try:
        return compose_config(config_name, overrides)
    except MissingConfigException as err:
        raise UserError(_unknown_option(err)) from None
    except OverrideParseException as err:
        raise UserError(f"cannot parse the command line: {_first_line(err)}") from None
    except ConfigCompositionException as err:
        cause = err.__cause__
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            base = compose_config(config_name, _without(overrides, cause.full_key))
            raise UserError(_unknown_key(base, str(cause.full_key))) from None
        raise UserError(_first_line(err)) from None


def run_task(task: Task, cfg: DictConfig) -> float | None:
    """Run ``task``; record a failure in summary.json and, in a multirun, go on to the next job."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = task(cfg)
    except (UserError, MissingMandatoryValue) as err:
        message = _user_message(err)
        _record_failure(output_dir, message)
        if multirun:
            log.error("job %s failed: %s", output_dir, message)
            _failed_jobs.append(f"{output_dir.name}: {message}")
            return None
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        _record_failure(output_dir, f"{type(err).__name__}: {_first_line(err)}")
        if multirun:
            log.exception("job %s failed", output_dir)
            _failed_jobs.append(f"{output_dir.name}: {type(err).__name__}: {_first_line(err)}")
            return None
        raise
    metric = cfg.get("optimized_metric")
    value = summary.get(metric) if metric and summary else None
    # a NaN or missing metric marks the Optuna trial failed instead of crashing the sweep
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _record_failure(output_dir: Path, message: str) -> None:
    save_json({"status": "failed", "error": message}, output_dir / "summary.json")


def _user_message(err: Exception) -> str:
    if isinstance(err, MissingMandatoryValue):
        return f"{err.full_key} is not set; pass {err.full_key}=... on the command line"
    # a UserError raised in a DataLoader worker comes back re-raised with the worker's traceback
    # in its message; its last line holds the original one-line message
    lines = str(err).strip().splitlines()
    prefix = f"{UserError.__module__}.{UserError.__name__}: "
    return next((line[len(prefix) :] for line in reversed(lines) if line.startswith(prefix)), str(err))


def _unknown_option(err: MissingConfigException) -> str:
    missing = err.missing_cfg_file or ""
    group, _, name = missing.rpartition("/")
    options = err.options or []
    if group and options:
        hint = difflib.get_close_matches(name, options, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        return f"unknown {group} {name!r}{maybe}; valid choices: {', '.join(sorted(options))}"
    return _first_line(err)


def _unknown_key(cfg: DictConfig, full_key: str) -> str:
    parent, _, key = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    valid = sorted(node.keys()) if isinstance(node, DictConfig) else []
    hint = difflib.get_close_matches(key, valid, n=1)
    maybe = f" (did you mean {parent + '.' if parent else ''}{hint[0]}?)" if hint else ""
    where = f"under {parent}" if parent else "at the top level"
    return (
        f"unknown config key {full_key!r}{maybe}; valid keys {where}: {', '.join(valid)}; "
        f"prefix with + to add a new key"
    )


def _without(overrides: list[str], full_key: Any) -> list[str]:
    key = str(full_key)
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
