"""What a run prints: the project's own lines and real warnings by default, the libraries' chatter with ``verbose=true``.

Without it a run opens with Lightning's device notices and its LitLogger tip, W&B's banner and
the deprecation warning of a call inside Lightning, none of which a user can act on. Lightning
logs its notices at INFO through the ``lightning.pytorch`` / ``lightning.fabric`` loggers, W&B
stays silent under ``WANDB_SILENT`` (its documented switch), and warnings a library raises about
its own internals are filtered by message. Warnings raised about the user's settings (Lightning's
``rank_zero_warn``: too few batches for the logging interval, a dataloader without workers) are
kept.
"""

from __future__ import annotations

import logging
import os
import warnings

#: Library loggers whose INFO notices a quiet run hides (their warnings still show).
LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")

#: Messages (regular expressions) of warnings that libraries raise about their own code.
LIBRARY_INTERNAL_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


def configure_output(verbose: bool, wandb: bool) -> None:
    """Hide the libraries' notices unless ``verbose``; a ``WANDB_SILENT`` the user set is kept.

    ``wandb``: the run logs to W&B. ``wandb.init`` checks its arguments (and warns about the
    ``anonymous=None`` Lightning passes) before it applies ``WANDB_SILENT`` to its terminal
    output, so that setting is applied first, with ``wandb.termsetup``.
    """
    if verbose:
        return
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in LIBRARY_INTERNAL_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    silent = os.environ.setdefault("WANDB_SILENT", "true").lower() in ("1", "true")
    if wandb and silent:
        import wandb as wandb_sdk

        wandb_sdk.termsetup(wandb_sdk.Settings(silent=True), None)
