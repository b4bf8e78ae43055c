"""The one plotting backend: every figure module draws with the pyplot that :func:`pyplot` returns.

Figures are written to files, never shown, so pyplot runs on matplotlib's headless Agg backend
(no display needed: SLURM jobs, CI, SSH sessions). The backend is selected on the first call, not
when a module is imported, so importing the package leaves matplotlib's state alone.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType


@cache
def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend, selected on the first call (later calls reuse it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
