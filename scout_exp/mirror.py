"""Mirroring a run to its loggers (W&B, CSV): the one helper every task uses."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any


def mirror_run(
    loggers: Sequence[Any],
    summary: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    images: Mapping[str, Sequence[str]] | None = None,
    table: tuple[str, list[str], list[list[Any]]] | None = None,
    html: Mapping[str, str] | None = None,
) -> None:
    """Send a run's ``config`` (hyper-parameters), ``summary``, ``images`` ({key: paths}) and ``table``
    (key, columns, rows) and ``html`` ({key: path of a self-contained .html file}) to every logger that
    takes them.

    A logger with a W&B-style ``experiment.summary`` gets the summary there; others get its numbers
    through ``log_metrics``. None values are left out. Images and tables go only to loggers with
    ``log_image`` / ``log_table``; keys whose path list is empty are skipped. HTML pages go to W&B
    loggers (those with ``log_image``) as ``wandb.Html`` media, unchanged (no injected style).
    """
    for logger in loggers:
        if config is not None:
            logger.log_hyperparams(dict(config))
        if summary is not None:
            experiment = getattr(logger, "experiment", None)
            if experiment is not None and hasattr(experiment, "summary"):
                experiment.summary.update({k: v for k, v in summary.items() if v is not None})
            else:
                logger.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
        for key, paths in (images or {}).items():
            if paths and hasattr(logger, "log_image"):
                logger.log_image(key=key, images=[str(p) for p in paths])
        if table is not None and hasattr(logger, "log_table"):
            key, columns, rows = table
            logger.log_table(key=key, columns=columns, data=rows)
        if html and hasattr(logger, "log_image"):
            import wandb

            logger.log_metrics({key: wandb.Html(path, inject=False) for key, path in html.items()})


def finish_runs(exit_code: int) -> None:
    """Close the W&B run a task opened (``wandb.finish``), with ``exit_code`` 0 for success.

    Lightning's ``WandbLogger`` leaves its run open at the end of ``fit`` and, when a run is still
    open, *attaches* to it instead of starting one. The next job of a Hydra multirun (the basic
    launcher runs jobs one after another in one process) would log into the previous job's run
    and, once W&B is torn down, fail. Nothing happens when W&B was never imported or no run is open.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)
