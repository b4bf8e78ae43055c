"""Sweeps end to end on tiny FaceParts settings: Hydra multiruns, a failing job, collect, Optuna
(run and resume), W&B sweep files, the SLURM launcher config, and explanation over two processes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir

from scout_exp.cli import CONFIG_DIR
from scout_exp.errors import UserError
from scout_exp.sweeps.__main__ import main as sweeps_main
from scout_exp.sweeps.collect import collect
from scout_exp.sweeps.wandb_sweep import agent_command, check_sweep, load_sweep
from tests.conftest import ROOT, run_entry

#: three identities of ten images: val and test hold one image per identity (an odd split of 3)
DATA = ("data.num_identities=3", "data.images_per_identity=10", "data.image_size=64", "model.input.size=32")
TRAIN = (
    *DATA,
    "data.batch_size=8",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.precision=32-true",
    "figure_samples=0",
    "logger=none",
)
EXPLAIN = (*DATA, "logger=none", "max_figures=1", "batch_size=2")


def _ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _jobs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def _summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2x2 training multirun (confidence head x learning rate); its sweep folder."""
    log_dir = tmp_path_factory.mktemp("grid")
    sweep_dir = log_dir / "sweep"
    result = run_entry(
        "train.py",
        *TRAIN,
        "head=softmax,certainty",
        "optimizer.lr=0.01,0.05",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
        cwd=log_dir,
    )
    _ok(result)
    return sweep_dir


@pytest.fixture(scope="module")
def ckpt(grid: Path) -> Path:
    return _jobs(grid)[0] / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_grid_multirun_has_four_summaries_and_collects(grid: Path) -> None:
    jobs = _jobs(grid)
    assert len(jobs) == 4
    settings = set()
    for job in jobs:
        summary = _summary(job)
        assert summary["status"] == "ok" and 0.0 <= summary["val_acc"] <= 1.0
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        head = next(o.split("=")[1] for o in overrides if o.startswith("head="))
        lr = next(o.split("=")[1] for o in overrides if o.startswith("optimizer.lr="))
        assert summary["head"] == head
        settings.add((head, lr))
    assert settings == {(h, lr) for h in ("softmax", "certainty") for lr in ("0.01", "0.05")}

    assert sweeps_main(["collect", str(grid), "--metric", "val_loss"]) == 0
    with open(grid / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"]
    for row, job in zip(rows, jobs):
        summary = _summary(job)
        assert row["status"] == "ok" and row["error"] == ""
        assert float(row["val_loss"]) == pytest.approx(summary["val_loss"])
        assert float(row["val_acc"]) == pytest.approx(summary["val_acc"])
        assert (row["head"], row["optimizer.lr"]) in settings
        assert row["summary.head"] == row["head"]  # the summary's own head, renamed beside the override
    markdown = (grid / "results.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| job"))
    assert header.split(" | ")[1:5] == ["status", "head", "optimizer.lr", "val_loss"]
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 5
    assert "Common overrides:" in markdown and "`data.num_identities=3`" in markdown
    assert (grid / "results_val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_failing_job_is_reported_and_the_others_run(ckpt: Path, tmp_path: Path) -> None:
    from scout_exp.data.faceparts import FaceParts
    from scout_exp.io import save_image

    fp = FaceParts(num_identities=3, images_per_identity=10, image_size=64)
    faces = [save_image(fp.render(i).image, tmp_path / f"face{i}.png") for i in (0, 10)]
    good = tmp_path / "pairs.csv"
    good.write_text(f"image_1,image_2,class_1,class_2\n{faces[0]},{faces[1]},0,1\n")
    missing = tmp_path / "gone" / "pairs.csv"
    sweep_dir = tmp_path / "sweep"
    result = run_entry(
        "explain.py",
        *EXPLAIN,
        f"ckpt_path={ckpt}",
        f"pairs={good},{missing}",
        f"hydra.sweep.dir={sweep_dir}",
        "-m",
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "error: 1 job(s) failed: 1:" in result.stderr
    ok, failed = (_summary(job) for job in _jobs(sweep_dir))
    assert ok["status"] == "ok" and ok["pairs"] == 1
    assert failed["status"] == "failed" and str(missing) in failed["error"]

    results = collect(sweep_dir)
    by_job = {row["job"]: row for row in results.rows}
    assert by_job["0"]["status"] == "ok" and by_job["1"]["status"] == "failed"
    assert by_job["1"]["error"] == failed["error"]
    assert results.varying == ["pairs"]
    assert by_job["0"]["explain_pairs"] == 1
    record = json.loads((_jobs(sweep_dir)[0] / "explanations.json").read_text())
    assert by_job["0"]["explain_mean_confidence"] == pytest.approx(
        np.mean([record["pairs"][0][side]["confidence"] for side in ("image_1", "image_2")])
    )
    assert "| 1 | failed |" in (sweep_dir / "results.md").read_text()


@pytest.mark.slow
def test_attribution_multirun_gives_three_summaries(ckpt: Path, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    _ok(
        run_entry(
            "explain.py",
            *EXPLAIN,
            f"ckpt_path={ckpt}",
            "max_pairs=2",
            "attribution=gradcam,gradcampp,gradxact",
            f"hydra.sweep.dir={sweep_dir}",
            "-m",
            cwd=tmp_path,
        )
    )
    summaries = [_summary(job) for job in _jobs(sweep_dir)]
    assert [s["attribution"] for s in summaries] == ["gradcam", "gradcampp", "gradxact"]
    # precision is null where no segment covers a part (an untrained 32-pixel model); recall is defined
    assert all(s["status"] == "ok" and s["pairs"] == 2 and 0.0 <= s["recall"] <= 1.0 for s in summaries)
    results = collect(sweep_dir, metric="recall")
    assert results.metric == "recall" and results.varying == ["attribution"]
    assert [row["recall"] for row in results.rows] == [s["recall"] for s in summaries]
    assert [row["precision"] for row in results.rows] == [s["precision"] for s in summaries]
    assert (sweep_dir / "results_recall.png").is_file()


@pytest.mark.slow
def test_optuna_search_runs_and_resumes(ckpt: Path, tmp_path: Path) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna' / 'explain_optuna.db'}"
    counts, values = [], {}
    for run, trials in (("first", 3), ("second", 1)):
        _ok(
            run_entry(
                "explain.py",
                *EXPLAIN,
                f"ckpt_path={ckpt}",
                "max_pairs=2",
                "hparams_search=explain_optuna",
                f"hydra.sweeper.n_trials={trials}",
                "optimized_metric=recall",  # precision can be undefined on an untrained tiny model
                f"hydra.sweep.dir={tmp_path / run}",
                cwd=tmp_path,
            )
        )
        study = optuna.load_study(study_name="explain_optuna", storage=storage)
        counts.append(len(study.trials))
        for job in _jobs(tmp_path / run):
            values[(run, job.name)] = _summary(job)["recall"]
        assert (tmp_path / run / "optimization_results.yaml").is_file()
        assert (tmp_path / run / "results.csv").is_file()
    assert counts == [3, 4]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    expected = [values[("first", str(i))] for i in range(3)] + [values[("second", "0")]]
    assert [t.value for t in study.trials] == pytest.approx(expected)


def test_training_search_config_composes() -> None:
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
    from optuna.distributions import CategoricalDistribution, LogUniformDistribution

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["hparams_search=faceparts_optuna", "paths.log_dir=/logs"], return_hydra_config=True
        )
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and cfg.optimized_metric == "val_acc"
    assert sweeper.storage == "sqlite:////logs/optuna/faceparts_optuna.db"
    assert sweeper.study_name == "faceparts_optuna" and sweeper.direction == "maximize"
    space, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert isinstance(space["optimizer.lr"], LogUniformDistribution) and space["optimizer.lr"].high == 0.2
    assert space["data.batch_size"] == CategoricalDistribution([32, 64, 128]) and not fixed


def test_storage_dir_callback_makes_the_sqlite_folder(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from scout_exp.sweeps.callbacks import StorageDir, sqlite_file

    db = tmp_path / "deep" / "optuna" / "study.db"
    assert sqlite_file(f"sqlite:///{db}") == db and sqlite_file("postgresql://h/db") is None
    StorageDir().on_multirun_start(OmegaConf.create({"hydra": {"sweeper": {"storage": f"sqlite:///{db}"}}}))
    assert db.parent.is_dir()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_wandb_sweep_file_expands_and_composes(path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    commands = check_sweep(path)
    grid_size = np.prod([len(s.get("values", [s.get("value")])) for s in sweep["parameters"].values()])
    if sweep["method"] == "grid":
        assert len(commands) == grid_size
    for argv in commands:
        assert argv[:3] == ["/usr/bin/env", "python", sweep["program"]]
        assert argv[-2:] == ["logger=wandb", "logger.wandb.offline=false"]
        assert [a.split("=")[0] for a in argv[3:-2]] == list(sweep["parameters"])


def test_wandb_agent_command_matches_hand_expansion() -> None:
    sweep = load_sweep(ROOT / "configs" / "sweeps" / "train_grid.yaml")
    argv = agent_command(sweep, {"model": "resnet50", "head": "hardness"})
    assert argv == [
        "/usr/bin/env",
        "python",
        "train.py",
        "model=resnet50",
        "head=hardness",
        "logger=wandb",
        "logger.wandb.offline=false",
    ]


def test_bad_wandb_sweep_files_are_one_line_errors(tmp_path: Path) -> None:
    base = yaml.safe_load((ROOT / "configs" / "sweeps" / "train_grid.yaml").read_text())
    no_args = dict(base, command=["${env}", "${interpreter}", "${program}", "${args}"])
    bad_value = dict(base, parameters={"model": {"values": ["resnet18", "resnet9000"]}})
    grid_dist = dict(base, parameters={"optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": 0.01}})
    for name, sweep, expected in (
        ("args", no_args, "${args_no_hyphens}"),
        ("value", bad_value, "resnet9000"),
        ("dist", grid_dist, "grid sweep needs value or values"),
    ):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(sweep))
        with pytest.raises(UserError, match=expected.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")):
            check_sweep(path)
    assert sweeps_main(["check", str(tmp_path / "value.yaml")]) == 2


def test_slurm_launcher_config_composes_into_an_sbatch_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hydra.utils
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import SlurmExecutor

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "trainer.num_nodes=2",
                "hydra.launcher.partition=gpu",
                f"hydra.sweep.dir={tmp_path}",
            ],
            return_hydra_config=True,
        )
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    params = launcher.params
    assert (params["gpus_per_node"], params["tasks_per_node"], params["nodes"]) == (4, 4, 2)
    assert params["partition"] == "gpu" and params["submitit_folder"] == f"{tmp_path}/.submitit/%j"

    # the launcher's own hand-over to submitit (SlurmLauncher.launch), on a machine without srun
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    executor = submitit.AutoExecutor(
        cluster="slurm", folder=tmp_path / "submitit", slurm_max_num_timeout=params["max_num_timeout"]
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout")
        }
    )
    script = executor._executor._make_submission_file_text("python train.py", "uid")
    for line in (
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --nodes=2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=240",
        "#SBATCH --mem=64GB",
    ):
        assert line in script, script


@pytest.mark.slow
def test_explain_split_over_two_processes_covers_each_pair_once(ckpt: Path, tmp_path: Path) -> None:
    from scout_exp.data.datamodules import FacePartsDataModule

    datamodule = FacePartsDataModule(
        num_identities=3,
        images_per_identity=10,
        image_size=64,
        seed=0,
        val_fraction=0.1,
        test_fraction=0.1,
        batch_size=8,
        num_workers=0,
        input_spec=None,
    )
    datamodule.setup()
    n_val = len(datamodule.splits["val"])
    assert n_val % 2 == 1  # an odd split: the distributed sampler has to pad one rank
    result = run_entry(
        "explain.py",
        *EXPLAIN,
        f"ckpt_path={ckpt}",
        "split=val",
        "max_pairs=null",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "batch_size=1",
        "verbose=true",  # Lightning's notice of the process group
        cwd=tmp_path,
    )
    _ok(result)
    assert (
        "world_size=2" in result.stdout + result.stderr or "distributed_backend=gloo" in result.stdout + result.stderr
    )
    (run,) = (tmp_path / "explain" / "runs").iterdir()
    record = json.loads((run / "explanations.json").read_text())
    names = [p["pair"] for p in record["pairs"]]
    assert names == [f"pair_{n:03d}" for n in range(n_val)]
    assert record["summary"]["pairs"] == n_val
    images = [p["images"][0] for p in record["pairs"]]
    assert images == [str(i) for i in datamodule.splits["val"].tolist()]


def _fake_job(job: Path, overrides: list[str], summary: dict | None, config: dict | None = None) -> None:
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))


def test_collect_table_from_hand_made_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sweep"
    config = {"optimized_metric": "val_loss"}
    for n, lr in enumerate(["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]):
        summary = {"status": "ok", "val_loss": 1.0 - n / 10, "model": "resnet18", "curve": [1, 2]}
        _fake_job(sweep / str(n), ["model=resnet18", f"optimizer.lr={lr}"], summary, config)
    _fake_job(sweep / "10", ["model=resnet18", "optimizer.lr=2.0"], {"status": "failed", "error": "bad | root"}, config)
    _fake_job(sweep / "11", ["model=resnet18", "optimizer.lr=3.0"], None, config)

    assert sweeps_main(["collect", str(sweep), "--out", str(tmp_path / "out")]) == 0
    assert "12 jobs (2 not ok); metric: val_loss" in capsys.readouterr().out
    with open(tmp_path / "out" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job"] for r in rows] == [str(n) for n in range(12)]  # 10 after 9, not after 1
    assert list(rows[0])[:4] == ["job", "status", "model", "optimizer.lr"] and "curve" not in rows[0]
    assert rows[0]["summary.model"] == "resnet18" and float(rows[3]["val_loss"]) == pytest.approx(0.7)
    assert (rows[10]["status"], rows[10]["error"], rows[10]["val_loss"]) == ("failed", "bad | root", "")
    assert rows[11]["status"] == "missing" and "no summary.json" in rows[11]["error"]
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "Best (min val_loss): 9: optimizer.lr=1.0" in markdown
    assert "Common overrides: `model=resnet18`" in markdown and "| 10 | failed | 2.0 |  | bad \\| root |" in markdown
    assert (tmp_path / "out" / "results_val_loss.png").is_file() and not (sweep / "results.csv").exists()


def test_collect_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweeps_main(["collect", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    _fake_job(tmp_path / "s" / "0", ["head=softmax"], {"status": "ok", "val_acc": 0.5})
    with pytest.raises(UserError, match="no job has a numeric 'val_acx'; numeric columns: val_acc"):
        collect(tmp_path / "s", metric="val_acx")
    (tmp_path / "s" / "0" / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="not readable JSON"):
        collect(tmp_path / "s")
