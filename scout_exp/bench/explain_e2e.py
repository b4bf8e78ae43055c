"""Benchmark: ``explain.py`` end to end on 100 and 2,000 FaceParts pairs (``--pairs``), against the
SCOUT engine alone on the same pairs: the default run (figures and the offline W&B logger on) and
the bare one (figures and logger off).

The default setting: a ResNet-18 classifier at 112 px (random weights; throughput does not depend
on training) saved as a train.py checkpoint, the default FaceParts data (look-alike families; half
of it in the val split so that 2,000 pairs exist), ``attribution=gradxact`` at ``layer4``, the
``parts`` metric with its chance rows, ``batch_size`` 16. ``explain.py`` runs as a user runs it, in
a child process per size: once as ``python explain.py`` runs by default (``max_figures`` 16 pair
figures, the PR and metric figures, ``report.html``, the offline W&B run: ``default``) and once
with ``max_figures=0 logger=none`` (``bare``). Reported per size and setting: pairs/s of the
explain task (its own ``wall_time_s``: loading, pair selection, predict loop, records, figures and
summary), the process's wall time (start-up included), pairs/s of ``ScoutExplainer.explain``
alone over the same batches (in this process, no segments, scores or outputs), the ratio
engine / task (target >= 0.7 for ``bare``), and the child's peak resident memory (target: the
largest size within 10% of the smallest, i.e. memory flat in the number of pairs). Each size runs
``REPEATS`` times, alternating the runs, and the fastest time of each counts: on a shared 2-core
machine single timings of the same run differ by up to 20%.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from scout_exp.checkpoint import OBJECTIVE_KEY
from scout_exp.config import CONFIG_DIR
from scout_exp.data.datamodules import FacePartsDataModule
from scout_exp.data.transforms import InputSpec, Preprocess
from scout_exp.explain.pairs import PairDataset, split_pairs
from scout_exp.explain.scout import ScoutExplainer
from scout_exp.models import resolve_model_config
from scout_exp.training.module import ClassifierModule

SIZES = (100, 2000)


def _config_file(name: str) -> dict[str, Any]:
    """The mapping of ``configs/<name>`` as plain containers, interpolations unresolved."""
    node = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / name))
    if not isinstance(node, dict):
        raise ValueError(f"configs/{name} holds no mapping")
    return {str(k): v for k, v in node.items()}


#: configs/data/faceparts.yaml with half of the images in the val split (2,500: room for 2,000 pairs)
DATA = {k: v for k, v in _config_file("data/faceparts.yaml").items() if k != "_target_"} | {"val_fraction": 0.5}
#: resnet18's input spec (its registration, with configs/model/resnet18.yaml's overrides)
INPUT = resolve_model_config(_config_file("model/resnet18.yaml"))["input"]
#: explain.py's default batch size (configs/explain.yaml)
BATCH = int(OmegaConf.load(CONFIG_DIR / "explain.yaml").batch_size)
#: each size runs this many times, explain.py and the engine alternately; the fastest of each counts
REPEATS = 2
#: child-process wrapper: run explain.py, then print the process's peak RSS (kB) on the last line. The
#: peak is VmHWM of /proc/self/status (this program's own memory); getrusage's ru_maxrss would also
#: count the parent's pages when the child was forked from a large parent, as Linux keeps it across exec.
_CHILD = (
    "import runpy, sys; sys.argv = sys.argv[1:]\n"
    "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "finally:\n"
    "    hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')]\n"
    "    print('PEAK_RSS_KB', hwm[0])\n"
)


def _checkpoint(path: Path) -> ClassifierModule:
    """A random-weight ResNet-18 saved as train.py saves one (objective recorded)."""
    pl.seed_everything(0, verbose=False)
    module = ClassifierModule("resnet18", DATA["num_identities"], target_layer="layer4", input_spec=INPUT)
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": pl.__version__,
        OBJECTIVE_KEY: {"name": "ce", "target": "scout_exp.training.module.ClassifierModule"},
    }
    torch.save(ckpt, path)
    return module.eval()


#: explain.py overrides of the two settings measured (``default``: as explain.py runs by default)
SETTINGS = {"default": [], "bare": ["max_figures=0", "logger=none"]}


def _run_explain(ckpt: Path, pairs: int, log_dir: Path, setting: str) -> dict[str, Any]:
    overrides = [
        "data.val_fraction=0.5",
        f"ckpt_path={ckpt}",
        f"paths.log_dir={log_dir}",
        f"max_pairs={pairs}",
        f"batch_size={BATCH}",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        *SETTINGS[setting],
    ]
    env = dict(os.environ, PROJECT_ROOT=str(CONFIG_DIR.parent), WANDB_MODE="offline", HYDRA_FULL_ERROR="1")
    script = str(CONFIG_DIR.parent / "explain.py")
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, script, *overrides], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"explain.py failed: {result.stderr[-2000:]}")
    peak = next(int(line.split()[1]) for line in result.stdout.splitlines()[::-1] if line.startswith("PEAK_RSS_KB"))
    run = max((log_dir / "explain" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pairs"] == pairs, summary
    return {"task_s": summary["wall_time_s"], "process_s": round(wall, 2), "peak_rss_mb": round(peak / 1024, 1)}


def _engine_alone(model: ClassifierModule, pairs: int) -> float:
    """Seconds of ScoutExplainer.explain over the same pairs and batches as explain.py makes."""
    datamodule = FacePartsDataModule(**DATA, input_spec=None)
    datamodule.setup()
    chosen = split_pairs(datamodule.faceparts, datamodule.splits["val"].tolist(), pairs)
    dataset = PairDataset(chosen, Preprocess(InputSpec.from_config(INPUT)), datamodule.faceparts)
    explainer = ScoutExplainer(model.model, "gradxact", "layer4", head="softmax")
    batches = list(DataLoader(dataset, batch_size=BATCH, shuffle=False))
    start = time.perf_counter()
    for batch in batches:
        x = torch.cat([batch["x1"], batch["x2"]])
        c1, c2 = batch["class_1"], batch["class_2"]
        explainer.explain(x, torch.cat([c1, c2]), torch.cat([c2, c1]))
    return time.perf_counter() - start


def main(pairs: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Run every size in ``pairs``; return the figures (see the module docstring).

    Raises ValueError when a size is not a positive number of pairs or exceeds the 2,500 val images.
    """
    if not pairs or any(not 0 < n <= 2000 for n in pairs):
        raise ValueError(f"--pairs takes sizes in 1..2000, got {list(pairs)}")
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    results: dict[str, Any] = {
        "batch_size": BATCH,
        "data": DATA,
        "model": "resnet18 @ 112x112, layer4, gradxact, metrics=[parts]",
        "settings": {name: " ".join(o) or "(defaults)" for name, o in SETTINGS.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "classifier.ckpt"
        model = _checkpoint(ckpt)
        for n in pairs:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTINGS}
            engine = []
            for repeat in range(REPEATS):  # alternated, so that a slow spell of the machine hits all
                for name in SETTINGS:
                    runs[name].append(_run_explain(ckpt, n, Path(tmp) / f"logs_{n}_{name}_{repeat}", name))
                engine.append(_engine_alone(model, n))
            engine_s = min(engine)
            results[str(n)] = {"engine_pairs_per_s": round(n / engine_s, 2)}
            for name, measured in runs.items():
                fastest = min(measured, key=lambda r: r["task_s"])
                results[str(n)][name] = {
                    **fastest,
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in measured),
                    "explain_pairs_per_s": round(n / fastest["task_s"], 2),
                    "ratio": round(engine_s / fastest["task_s"], 3),
                }
    if len(pairs) > 1:
        small, large = results[str(min(pairs))]["bare"], results[str(max(pairs))]["bare"]
        results["peak_rss_growth"] = round(large["peak_rss_mb"] / small["peak_rss_mb"] - 1, 3)
    return results
