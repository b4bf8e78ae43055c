"""Run an entry point (``train.py``, ``explain.py``) inside the test process, as its command would run.

A command pays the torch and Lightning import (seconds) before it does anything; most CLI tests
only need what the command does, so :func:`run_script` executes the script itself (``runpy``, as
``__main__``, with ``sys.argv`` set as the shell would: ``scout_exp.cli.main`` with the script's
config name and task, the override checks, Hydra's run folders, ``summary.json``) and hands back a
:class:`subprocess.CompletedProcess` like the command's: ``returncode`` from the ``SystemExit`` it
ends with (1 and the traceback for an uncaught exception), ``stdout`` and ``stderr`` as the two file
descriptors received them.

Isolation, so that a run sees the state a fresh process has and leaves the test process as it was:

* output: file descriptors 1 and 2 go to files, ``sys.stdout`` / ``sys.stderr`` are unbuffered text
  streams on them (not a terminal, as with a pipe), and logging handlers already writing to the
  test's streams write there, so ``print``, Hydra's and Lightning's log lines, warnings, C libraries
  and DataLoader workers all land in the captured output;
* warnings: Python's default filters plus those the libraries install when imported
  (:data:`LIBRARY_FILTERS`), shown on ``sys.stderr`` (not recorded by pytest);
* logging: loggers' levels, handlers, ``propagate`` and ``disabled`` are restored, the handlers a
  run added (its ``<run>/<task>.log`` file) closed; Lightning's loggers start as its import leaves
  them in a command (level INFO, propagating to the handlers Hydra configured);
* ``sys.argv``, ``sys.path`` (the script's folder first), ``os.environ``, the working directory,
  signal handlers, ``GlobalHydra`` and ``HydraConfig``, torch's default dtype, thread count, grad
  mode, determinism flags and random states (with NumPy's and ``random``'s), matplotlib's rcParams
  and figures, W&B (torn down at the end, as its exit hook would);
* module state of ``scout_exp``: lists, dicts and sets held by its modules and the
  :class:`~scout_exp.registry.Registry` contents are put back, plug-in modules a run imported (from
  outside the project and the installed packages) are dropped with what they registered.

What a process has and this cannot give (a signal sent to the process, DDP's extra processes, a
timeout) is named by :func:`needs_process`; ``run_entry`` starts a real command for those.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import random
import runpy
import signal
import subprocess
import sys
import sysconfig
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Python's own filters when no -W option is given (``_warnings``' defaults, not in dev mode)
_PYTHON_FILTERS: list[tuple[Any, ...]] = [
    ("default", None, DeprecationWarning, "__main__", 0),
    ("ignore", None, DeprecationWarning, None, 0),
    ("ignore", None, PendingDeprecationWarning, None, 0),
    ("ignore", None, ImportWarning, None, 0),
    ("ignore", None, ResourceWarning, None, 0),
]


def _fresh_filters() -> None:
    """Set ``warnings.filters`` to a new interpreter's (with the -W / PYTHONWARNINGS options)."""
    warnings.filters[:] = _PYTHON_FILTERS
    warnings._filters_mutated()  # type: ignore[attr-defined]
    warnings._processoptions(sys.warnoptions)  # type: ignore[attr-defined]


# The filters torch, Lightning and the libraries they load install when imported: a command
# imports them during the run and has them; here they were imported once, while pytest collected
# (which keeps no filter set then), so they are recorded by importing them in a clean state first.
_placeholder = logging.NullHandler()  # Lightning's import adds its own handler to a bare root logger
logging.getLogger().addHandler(_placeholder)
with warnings.catch_warnings():
    _fresh_filters()
    import lightning.pytorch  # noqa: F401
    import torch

    LIBRARY_FILTERS: list[tuple[Any, ...]] = list(warnings.filters)
logging.getLogger().removeHandler(_placeholder)

#: Lightning's loggers as its import leaves them in a command, where Hydra configured the root
#: logger first: INFO, and (the subpackages) without a handler of their own, propagating to root;
#: ``lightning`` keeps the console handler it always adds
FRESH_LOGGERS = {"lightning": False, "lightning.pytorch": True, "lightning.fabric": True}

_LIBRARIES = {
    Path(p).resolve() for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
}
_LIBRARIES |= {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}


def needs_process(overrides: Sequence[str]) -> str | None:
    """Why these overrides need a real process (None when they run in-process just as well)."""
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if "SendSignal" in value or "signal_helpers" in value:
            return "it sends a signal to its own process"
        if (key == "trainer" and value.startswith("ddp")) or (key == "trainer.strategy" and "ddp" in value):
            return "DDP starts more processes, the command again"
        if key in ("trainer.devices", "trainer.num_nodes") and value.isdigit() and int(value) > 1:
            return "several devices start more processes"
        if key.startswith("hydra/launcher") or key.startswith("hydra.launcher"):
            return "a launcher starts its own processes"
    return None


def run_script(script: Path, args: Sequence[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python <script> args...`` in this process, in ``cwd`` with ``os.environ`` = ``env``."""
    argv = [str(script), *args]
    with _captured() as output:
        with _isolated(script, argv, cwd, env):
            code = _execute(script)
    return subprocess.CompletedProcess([sys.executable, *argv], code, output["stdout"], output["stderr"])


def _execute(script: Path) -> int:
    """Run the script as ``__main__``; its exit status as the interpreter would report it."""
    try:
        runpy.run_path(str(script), run_name="__main__")
        code: Any = 0
    except SystemExit as exit_:
        code = exit_.code
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -int(signal.SIGINT)
    except BaseException:  # an uncaught exception: the interpreter prints it and exits with 1
        traceback.print_exc()
        code = 1
    finally:
        _end_of_process()
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _end_of_process() -> None:
    """What the interpreter's exit does that tests read: W&B's exit hook, flushed log handlers."""
    wandb_setup = sys.modules.get("wandb.sdk.wandb_setup")
    if wandb_setup is not None and getattr(wandb_setup, "_singleton", None) is not None:
        import wandb

        with contextlib.suppress(Exception):
            wandb.teardown()
    for handler in _all_handlers():
        with contextlib.suppress(Exception):
            handler.flush()


# --- output -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _captured() -> Iterator[dict[str, str]]:
    """File descriptors 1 and 2 (and the streams and handlers on them) into two files."""
    output: dict[str, str] = {}
    old_streams = (sys.stdout, sys.stderr)
    for stream in old_streams:
        with contextlib.suppress(Exception):
            stream.flush()
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    for fd, file in files.items():
        os.dup2(file.fileno(), fd)
    # what python -u gives a command writing to a pipe: unbuffered, fileno() 1 and 2, not a tty
    new = [
        io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors=err, write_through=True)
        for fd, err in ((1, "strict"), (2, "backslashreplace"))
    ]
    swapped = _swap_handler_streams(old_streams, new)
    sys.stdout, sys.stderr = new
    try:
        yield output
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__, *new):
            with contextlib.suppress(Exception):
                stream.flush()  # type: ignore[union-attr]
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)  # C stdio buffers, as the process exit would flush them
        for handler, stream in swapped:
            with contextlib.suppress(Exception):
                handler.setStream(stream)
        sys.stdout, sys.stderr = old_streams
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            files[fd].seek(0)
            output[name] = files[fd].read().decode("utf-8", "replace")
            files[fd].close()


def _swap_handler_streams(old: tuple[Any, Any], new: list[Any]) -> list[tuple[logging.StreamHandler, Any]]:
    """Point the stream handlers writing to the test's stdout/stderr at the captured ones."""
    swapped = []
    out = {id(old[0]), id(sys.__stdout__)}
    err = {id(old[1]), id(sys.__stderr__)}
    for handler in _all_handlers():
        if type(handler) is logging.StreamHandler or (
            isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        ):
            stream = handler.stream
            if id(stream) in out:
                swapped.append((handler, stream))
                handler.setStream(new[0])
            elif id(stream) in err or type(stream).__module__ == "_pytest.capture":
                swapped.append((handler, stream))
                handler.setStream(new[1])
    return swapped


def _loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    return [logging.getLogger(), *(lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger))]


def _all_handlers() -> list[logging.Handler]:
    seen: dict[int, logging.Handler] = {}
    for logger in _loggers():
        for handler in logger.handlers:
            seen.setdefault(id(handler), handler)
    return list(seen.values())


def _show_warning(message: warnings.WarningMessage) -> None:
    """The interpreter's ``warnings._showwarnmsg_impl`` (pytest records warnings instead)."""
    file = message.file if message.file is not None else sys.stderr
    if file is None:
        return
    with contextlib.suppress(OSError):
        file.write(warnings._formatwarnmsg(message))  # type: ignore[attr-defined]


# --- the rest of the process state --------------------------------------------------------------
@contextlib.contextmanager
def _isolated(script: Path, argv: list[str], cwd: Path, env: dict[str, str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        stack.enter_context(_process_basics(argv, cwd, env, script.parent))
        stack.enter_context(_logging_state())
        stack.enter_context(warnings.catch_warnings())
        warnings.filters[:] = LIBRARY_FILTERS
        warnings._filters_mutated()  # type: ignore[attr-defined]
        warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]
        warnings._showwarnmsg_impl = _show_warning  # type: ignore[attr-defined]
        stack.enter_context(_torch_state())
        stack.enter_context(_library_state())
        stack.enter_context(_project_state())
        yield


@contextlib.contextmanager
def _process_basics(argv: list[str], cwd: Path, env: dict[str, str], script_dir: Path) -> Iterator[None]:
    saved_argv, saved_path, saved_env, saved_cwd = sys.argv[:], sys.path[:], dict(os.environ), os.getcwd()
    saved_hook = sys.excepthook
    handlers = {}
    for signum in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError, TypeError):
            handlers[signum] = signal.getsignal(signum)
    sys.argv[:] = argv
    sys.path.insert(0, str(script_dir))
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path
        sys.excepthook = saved_hook
        for signum, handler in handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(signum, handler)


@contextlib.contextmanager
def _logging_state() -> Iterator[None]:
    def state(lg: logging.Logger) -> tuple[Any, ...]:
        return lg.level, lg.handlers[:], lg.filters[:], lg.propagate, lg.disabled

    saved = {id(lg): (lg, state(lg)) for lg in _loggers()}
    handlers_before = {id(h) for h in _all_handlers()}
    disable, capture = logging.root.manager.disable, logging._warnings_showwarning  # type: ignore[attr-defined]
    for name, own_handlers_dropped in FRESH_LOGGERS.items():
        if name in logging.Logger.manager.loggerDict:
            lg = logging.getLogger(name)
            lg.setLevel(logging.INFO)
            if own_handlers_dropped:
                lg.handlers = [h for h in lg.handlers if isinstance(h, logging.FileHandler)]
            lg.propagate, lg.disabled = True, False
    try:
        yield
    finally:
        added = [h for h in _all_handlers() if id(h) not in handlers_before]
        for lg in _loggers():
            if id(lg) in saved:
                lg.level, handlers, lg.filters, lg.propagate, lg.disabled = saved[id(lg)][1]
                lg.handlers = handlers
            else:  # a logger the run created: keep its level, drop the run's handlers
                lg.handlers = [h for h in lg.handlers if id(h) in handlers_before]
        for handler in added:
            with contextlib.suppress(Exception):
                handler.close()
        logging.disable(disable)
        logging._warnings_showwarning = capture  # type: ignore[attr-defined]
        logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _torch_state() -> Iterator[None]:
    import numpy as np

    dtype, threads, grad = torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled()
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    matmul, anomaly = torch.get_float32_matmul_precision(), torch.is_anomaly_enabled()
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        torch.set_grad_enabled(grad)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
        torch.set_float32_matmul_precision(matmul)
        torch.set_anomaly_enabled(anomaly)
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


@contextlib.contextmanager
def _library_state() -> Iterator[None]:
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    hydra_cfg = HydraConfig.instance().cfg
    cv2 = sys.modules.get("cv2")
    cv2_threads = cv2.getNumThreads() if cv2 is not None else None
    with contextlib.ExitStack() as stack:
        if "matplotlib" in sys.modules:
            import matplotlib

            stack.enter_context(matplotlib.rc_context())
        try:
            yield
        finally:
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = hydra_cfg  # type: ignore[assignment]
            if cv2_threads is not None:
                cv2.setNumThreads(cv2_threads)
            if "matplotlib.pyplot" in sys.modules:
                sys.modules["matplotlib.pyplot"].close("all")


@contextlib.contextmanager
def _project_state() -> Iterator[None]:
    """The run state of ``scout_exp`` reset; plug-ins a run imported dropped with what they registered."""
    modules_before = set(sys.modules)
    _reset_run_state()
    try:
        yield
    finally:
        plugins = {
            name
            for name in set(sys.modules) - modules_before
            if name.startswith("scout_exp_plugin_") or _outside_project(sys.modules[name])
        }
        if plugins and "scout_exp.registry" in sys.modules:
            from scout_exp.registry import Registry

            for module in _project_modules():
                for value in list(vars(module).values()):
                    if isinstance(value, Registry):
                        for name, obj in list(value._items.items()):
                            if _defined_in(obj, plugins):
                                del value._items[name]
        for name in plugins:
            sys.modules.pop(name, None)
        _reset_run_state()


def _reset_run_state() -> None:
    cli = sys.modules.get("scout_exp.cli")
    if cli is not None:
        cli._failed_jobs.clear()
    manifest = sys.modules.get("scout_exp.manifest")
    if manifest is not None:
        manifest.reset()


def _project_modules() -> list[Any]:
    return [
        m
        for name, m in list(sys.modules.items())
        if m is not None and (name == "scout_exp" or name.startswith("scout_exp."))
    ]


def _outside_project(module: Any) -> bool:
    """A module from a file outside the project and the installed packages (a user's plug-in)."""
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(p) for p in (ROOT, *_LIBRARIES))


def _defined_in(obj: Any, modules: set[str]) -> bool:
    if getattr(obj, "__module__", None) in modules:
        return True
    return any(getattr(v, "__module__", None) in modules for v in getattr(obj, "__dict__", {}).values())
