"""The package's layering (pyproject.toml [tool.importlinter]) holds: lint-imports passes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_layers_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "import-linter is not installed (pip install -e '.[dev]')"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_no_import_inside_a_function_reaches_into_scout_exp_upwards() -> None:
    """Imports of scout_exp inside functions (which lint-imports sees too) are only lazy loads of
    heavy siblings, never a dodge: the contract above would fail on an upward one."""
    offenders = []
    for path in (ROOT / "scout_exp").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if line.startswith((" ", "\t")) and stripped.startswith(("from scout_exp.tasks", "from scout_exp.cli")):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert not offenders, offenders
