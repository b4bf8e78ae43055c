"""Hydra callbacks for sweeps: make the Optuna storage's folder, collect the results at the end."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from scout_exp.errors import UserError

log = logging.getLogger(__name__)


def sqlite_file(storage: str | None) -> Path | None:
    """The database file of a ``sqlite:///...`` storage URL (parsed by SQLAlchemy); None otherwise."""
    if not storage or not str(storage).startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(str(storage)).database
    return Path(database) if database and database != ":memory:" else None


class StorageDir(Callback):
    """Create the folder of ``hydra.sweeper.storage`` before the sweep opens the study (SQLite won't)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        path = sqlite_file(OmegaConf.select(config, "hydra.sweeper.storage"))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            log.info("Optuna study %s in %s", OmegaConf.select(config, "hydra.sweeper.study_name"), path)


class CollectResults(Callback):
    """Write results.csv / results.md / a plot of ``optimized_metric`` into the multirun folder at the end."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from scout_exp.sweeps.collect import collect

        sweep_dir = Path(str(config.hydra.sweep.dir))
        direction = OmegaConf.select(config, "hydra.sweeper.direction")
        goal = {"maximize": "max", "minimize": "min"}.get(str(direction))
        try:
            results = collect(sweep_dir, metric=None, goal=goal)
        except UserError as err:
            log.warning("results not collected: %s", err)
            return
        log.info("results: %s", ", ".join(str(p) for p in results.files.values()))
