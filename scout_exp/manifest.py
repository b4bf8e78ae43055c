"""The run manifest: what produced a run, on what, and how long each stage took (``manifest.json``).

Beside the resolved config and ``summary.json``, a result can only be reproduced or compared with
the code that made it (git commit, and whether the working tree had uncommitted changes), the
package versions, and the machine (CPU, threads, GPU). Tasks mark their stages with
:func:`stage`; :func:`save_manifest` writes the manifest into the run folder when the task ends,
successful, failed or interrupted, and tasks mirror :func:`run_manifest` to their W&B run's config.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from scout_exp.io import save_json

ROOT = Path(__file__).resolve().parents[1]

#: Distributions whose versions decide a run's numbers.
PACKAGES = (
    "scout-exp",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "numpy",
    "opencv-python-headless",
    "matplotlib",
    "wandb",
    "quantus",
    "grad-cam",
    "facenet-pytorch",
    "captum",
)

_stages: dict[str, dict[str, float]] = {}
_started = time.time()


def reset() -> None:
    """Start a new run's record (a multirun runs its jobs one after another in one process)."""
    global _started
    _stages.clear()
    _started = time.time()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Record the wall time (s) of the ``with`` block and the peak memory (MiB) when it ends.

    ``peak_rss_mib`` is the process's peak resident memory so far (``getrusage``; it never
    decreases); ``peak_cuda_mib`` the peak memory torch allocated on the GPU during the block.
    A stage entered twice adds up its times.
    """
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield
    finally:
        record = _stages.setdefault(name, {"seconds": 0.0})
        record["seconds"] = round(record["seconds"] + time.perf_counter() - start, 3)
        record["peak_rss_mib"] = round(_peak_rss_mib(), 1)
        if cuda is not None:
            record["peak_cuda_mib"] = round(cuda.max_memory_allocated() / 2**20, 1)


def run_manifest() -> dict[str, Any]:
    """The manifest of the current run: ``code``, ``packages``, ``machine``, ``stages``, ``started``, ``python``."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(_started)),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "code": _git(),
        "python": platform.python_version(),
        "packages": _packages(),
        "machine": _machine(),
        "stages": dict(_stages),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def save_manifest(out_dir: Path) -> dict[str, Any]:
    """Write :func:`run_manifest` to ``<out_dir>/manifest.json`` (atomically) and return it."""
    manifest = run_manifest()
    save_json(manifest, Path(out_dir) / "manifest.json")
    return manifest


def _git() -> dict[str, Any]:
    """Commit and dirty flag of the checkout the code runs from (``None`` values outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _cuda() -> Any:
    """``torch.cuda`` when torch is loaded and a GPU is there, else None (no torch import for it)."""
    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None
