"""Deterministic train/val/test splits of index ranges."""

from __future__ import annotations

import numpy as np

from scout_exp.errors import UserError


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (train, val, test), stratified by ``labels`` when given.

    Each class contributes round(fraction * its size) items to val and test, so small
    identities stay in training and every split sees every identity where it can.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise UserError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be in "
            "[0, 1) and sum to less than 1"
        )
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train, val, test = [], [], []
    for idx in groups:
        idx = rng.permutation(idx)
        n_val = int(round(val_fraction * len(idx)))
        n_test = int(round(test_fraction * len(idx)))
        val.append(idx[:n_val])
        test.append(idx[n_val : n_val + n_test])
        train.append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(part)).astype(np.int64) for part in (train, val, test))  # type: ignore[return-value]


def carve_calibration(
    train: np.ndarray, labels: np.ndarray, fraction: float, held_out: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split the training indices ``train`` into (train, calibration), stratified by ``labels`` (of every item).

    ``fraction`` is the calibration share of the WHOLE dataset (like ``val_fraction``), so it is taken
    as ``fraction / (1 - held_out)`` of the training part, where ``held_out`` is val + test. The
    permutation uses its own generator (``seed`` + 1), so val and test stay as without calibration.
    Raises UserError when ``fraction`` is not in (0, 1 - held_out).
    """
    if not 0 < fraction < 1 - held_out:
        raise UserError(
            f"data.calibration_fraction={fraction} must be > 0 and below 1 - val - test fractions ({1 - held_out:.3g})"
        )
    rest, calibration, _ = split_indices(len(train), fraction / (1 - held_out), 0.0, seed + 1, labels[train])
    return train[rest], train[calibration]
