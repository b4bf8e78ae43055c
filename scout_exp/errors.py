"""User-facing errors: one line that says what is wrong and how to fix it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A problem with the user's input (paths, config, files); printed as one line, exit code 2."""


class Interrupted(Exception):
    """A run stopped by a signal after saving what it had; printed as one line.

    ``exit_code`` follows the shell's 128 + signal number (143 for SIGTERM, 130 for SIGINT), so a
    scheduler (SLURM sends SIGTERM) sees a run that did not finish.
    """

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_on_user_error(fn: F) -> F:
    """Run ``fn``; turn a :class:`UserError` into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
