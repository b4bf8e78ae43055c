"""Entry-point plumbing shared by ``train.py`` and ``explain.py``.

Hydra composes the config; before that, single runs are composed once more here so that a
misspelt key or unknown option becomes one line naming it and the valid choices (Hydra's own
message is several lines and names no valid keys); a multirun checks every swept value the same
way before it starts. The output folder is checked before Hydra creates it, config values of a
``_target_`` are checked against its signature's types, and an output that cannot be written
(full disk, read-only folder) is one line. User errors inside a task exit with status 2; in a
multirun a failing job is recorded in its ``summary.json`` and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import inspect
import logging
import math
import os
import sys
import tempfile
import typing
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
from scout_exp.console import configure_output
from scout_exp.errors import Interrupted, UserError
from scout_exp.io import save_json
from scout_exp.manifest import reset as reset_manifest
from scout_exp.manifest import save_manifest
from scout_exp.mirror import finish_runs
from scout_exp.plugins import import_plugins

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
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    try:
        if not flags:  # --help, --cfg and the like: Hydra handles those itself
            cfg = check_overrides(config_name, overrides, hydra_node=True)
            check_scalar_types(config_name, cfg, overrides)
            check_output_dir(OmegaConf.select(cfg, "hydra.run.dir"))
        elif set(flags) <= {"-m", "--multirun"}:
            for combination in sweep_checks(overrides):
                cfg = check_overrides(config_name, combination, hydra_node=True)
                check_scalar_types(config_name, cfg, combination)
            check_output_dir(OmegaConf.select(cfg, "hydra.sweep.dir"))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def _hydra_main(cfg: DictConfig) -> float | None:
        # imported here, so that --help and --cfg answer before torch and Lightning load
        run = hydra.utils.get_method(task) if isinstance(task, str) else task
        # after the import: Lightning sets its log level there
        configure_output(bool(cfg.get("verbose", False)), wandb=OmegaConf.select(cfg, "logger.wandb") is not None)
        return run_task(run, cfg)

    _hydra_main()
    if _failed_jobs:
        print(f"error: {len(_failed_jobs)} job(s) failed: {'; '.join(_failed_jobs)}", file=sys.stderr)
        sys.exit(1)


def sweep_checks(overrides: list[str]) -> list[list[str]]:
    """Override lists that together try every value of every swept override (not their product).

    ``a=1,2 b=x,y`` gives ``[a=1 b=x], [a=2 b=x], [a=1 b=y]``: each value is composed once, so a
    misspelt option anywhere in a sweep is found before the first job runs. Sweeps Hydra cannot
    list (intervals for Optuna) are left to the sweeper.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UserError(f"cannot parse the command line: {_first_line(err)}") from None
    values: list[list[str]] = []
    for override, text in zip(parsed, overrides):
        choices = [text]
        if override.is_sweep_override():
            try:
                choices = [f"{override.get_key_element()}={v}" for v in override.sweep_string_iterator()]
            except Exception:  # interval and other sweeps with no list of values
                choices = []
        values.append(choices)
    base = [v[0] for v in values if v]
    checks = [base]
    for i, choices in enumerate(values):
        position = sum(1 for v in values[:i] if v)
        checks += [base[:position] + [c] + base[position + 1 :] for c in choices[1:]]
    return checks


def check_scalar_types(config_name: str, cfg: DictConfig, overrides: list[str]) -> None:
    """Refuse an override of a number or flag of the primary config with a value of another kind.

    ``batch_size=abc``, ``max_pairs=1.5``, ``segment.area_fraction=ten``: the primary config's own
    keys (not the groups', which :func:`check_target_types` checks against their targets) keep
    the kind of their default (an integer, a number, true/false); null is allowed where it is.
    """
    defaults = OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml")
    for override in overrides:
        key = override.split("=", 1)[0]
        if key.startswith(("+", "~")) or "=" not in override:
            continue
        default = OmegaConf.select(defaults, key, throw_on_resolution_failure=False)
        expected: type | None
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            expected = bool if isinstance(default, bool) else None
        else:
            expected = int if isinstance(default, int) else float
        if expected is None:
            continue
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        if value is None or _fits(value, expected):
            continue
        raise UserError(f"{key}={value!r} is not {_SIMPLE[expected]}; fix the value on the command line")


def check_output_dir(path: Any) -> None:
    """Refuse an output folder that cannot be created or written, in one line, before Hydra tries."""
    if not path:
        return
    target = Path(str(path)).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"cannot create the output folder {target}: {existing} is a file; move it or set hydra.run.dir / paths.log_dir"
        )
    try:
        tempfile.TemporaryDirectory(dir=existing).cleanup()
    except OSError as err:
        raise UserError(
            f"cannot write the output folder {target} ({err.strerror or err}); "
            "choose a writable one with paths.log_dir=<folder> (or hydra.run.dir=<folder>)"
        ) from None


def check_overrides(config_name: str, overrides: list[str], hydra_node: bool = False) -> DictConfig:
    """Compose the config with ``overrides``; raise a one-line :class:`UserError` on a bad one."""
    try:
        return compose_config(config_name, overrides, return_hydra_config=hydra_node)
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
    """Run ``task``; record a failure in summary.json and, in a multirun, go on to the next job.

    Whatever the outcome, the run folder gets its ``manifest.json`` (:mod:`scout_exp.manifest`) and
    the W&B run the task opened is finished.
    """
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    reset_manifest()
    exit_code = 1
    try:
        value = _run_task(task, cfg, output_dir)
        exit_code = 0
        return value
    finally:
        finish_runs(exit_code)  # the next job of a multirun starts its own W&B run
        with contextlib.suppress(OSError):  # an unwritable folder was already reported
            save_manifest(output_dir)


def _run_task(task: Task, cfg: DictConfig, output_dir: Path) -> float | None:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        import_plugins(cfg.get("plugins") or [])
        check_target_types(cfg)
        summary = task(cfg)
    except Interrupted as err:  # the task saved its state and summary; a sweep stops here too
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (UserError, MissingMandatoryValue, OSError) as err:
        if isinstance(err, OSError) and err.errno not in _WRITE_ERRNOS:
            _crash(err, output_dir, multirun)
            return None
        message = _user_message(err)
        _record_failure(output_dir, message)
        if multirun:
            log.error("job %s failed: %s", output_dir, message)
            _failed_jobs.append(f"{output_dir.name}: {message}")
            return None
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        _crash(err, output_dir, multirun)
        return None
    metric = cfg.get("optimized_metric")
    value = summary.get(metric) if metric and summary else None
    # a NaN or missing metric marks the Optuna trial failed instead of crashing the sweep
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


#: OSError numbers that mean "cannot write the outputs here", told as one line
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _crash(err: Exception, output_dir: Path, multirun: bool) -> None:
    """A bug (not a user error): record it; in a multirun go on, else re-raise with its traceback."""
    _record_failure(output_dir, f"{type(err).__name__}: {_first_line(err)}")
    if multirun:
        log.exception("job %s failed", output_dir)
        _failed_jobs.append(f"{output_dir.name}: {type(err).__name__}: {_first_line(err)}")
        return None
    raise err


def check_target_types(cfg: DictConfig) -> None:
    """Refuse config values whose type the ``_target_`` they go to cannot take (``trainer.max_epochs=abc``).

    Each group node with a ``_target_`` (trainer, data, callbacks, ...) is checked against the
    type hints of its target's signature; only simple hints (int, float, bool, str, None,
    Literal and unions of them) are checked, anything else is left to the target.
    """
    from hydra._internal.utils import _locate

    for key, node in _target_nodes(cfg):
        try:
            target = _locate(str(node["_target_"]))
            hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
        except Exception:  # unknown target or unresolvable hints: the target reports itself
            continue
        try:
            values = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
        except Exception:  # a broken interpolation is reported where the value is used
            continue
        for name, value in values.items():  # type: ignore[union-attr]
            field = str(name)
            hint = hints.get(field)
            if hint is not None and value != "???" and not _fits(value, hint):
                raise UserError(f"{key}.{field}={value!r} is not {_describe(hint)}; fix the value on the command line")


def _target_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    nodes = []
    for key in cfg:
        node = cfg.get(key)
        if not isinstance(node, DictConfig):
            continue
        name = str(key)
        if "_target_" in node:
            nodes.append((name, node))
        nodes += [
            (f"{name}.{str(k)}", v)
            for k, v in node.items()
            if isinstance(v, DictConfig) and "_target_" in v and "_partial_" not in v
        ]
    return nodes


_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def _members(hint: Any) -> list[Any] | None:
    """The simple members of ``hint`` (a type, Literal or union of them); None when any is not simple."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return [("literal", v) for v in typing.get_args(hint)]
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        found: list[Any] = []
        for arg in typing.get_args(hint):
            sub = _members(arg)
            if sub is None:
                return None
            found += sub
        return found
    return [hint] if hint in _SIMPLE else None


def _fits(value: Any, hint: Any) -> bool:
    members = _members(hint)
    if members is None:
        return True
    for m in members:
        if isinstance(m, tuple):
            if value == m[1] and type(value) is type(m[1]):
                return True
        elif m is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        elif m is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        elif m in (bool, str, type(None)) and type(value) is m:
            return True
    return False


def _describe(hint: Any) -> str:
    members = _members(hint) or []
    words = [repr(m[1]) if isinstance(m, tuple) else _SIMPLE[m] for m in members]
    return " or ".join(dict.fromkeys(words))


def _record_failure(output_dir: Path, message: str) -> None:
    save_json({"status": "failed", "error": message}, output_dir / "summary.json")


def _user_message(err: Exception) -> str:
    if isinstance(err, OSError):
        where = f" {err.filename}" if err.filename else ""
        return (
            f"cannot write{where}: {err.strerror or err}; free some space or write elsewhere (paths.log_dir=<folder>)"
        )
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
    # a leading underscore marks a shared base that option configs include (e.g. model/_face_embedder)
    options = [o for o in err.options or [] if not o.startswith("_")]
    if group and options:
        hint = difflib.get_close_matches(name, options, n=1)
        maybe = f" (did you mean {hint[0]}?)" if hint else ""
        return f"unknown {group} {name!r}{maybe}; valid choices: {', '.join(sorted(options))}"
    return _first_line(err)


def _unknown_key(cfg: DictConfig, full_key: str) -> str:
    parent, _, key = full_key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    valid = sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []
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
