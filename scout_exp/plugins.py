"""User plug-ins named in the config (``plugins=[...]``), imported before a task builds anything.

A plug-in is a Python module that registers something when imported: a backbone
(``@register_model``), an attribution method (``@register_attribution``), a confidence head, a
metric (``@register_metric``) or a data set. Each entry of ``plugins`` is either an importable
module name (``my_lab.metrics``) or the path of a ``.py`` file; a file is imported once per
process under a name derived from its resolved path, so a multirun imports it once.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from scout_exp.errors import UserError


def import_plugins(entries: Iterable[str]) -> list[ModuleType]:
    """Import every plug-in of ``entries`` (module names or ``.py`` paths); the imported modules.

    Raises UserError for a file that does not exist or a module name that cannot be found. An
    exception raised *inside* a plug-in propagates unchanged: it is the plug-in's bug, with its
    traceback.
    """
    return [_import_one(str(entry)) for entry in entries]


def _import_one(entry: str) -> ModuleType:
    if entry.endswith(".py") or "/" in entry:
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"plugin file {entry} does not exist; give a .py file or an importable module name")
        name = f"scout_exp_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    try:
        return importlib.import_module(entry)
    except ModuleNotFoundError as err:
        if err.name is not None and entry.startswith(err.name):
            raise UserError(
                f"plugin module {entry!r} cannot be imported ({err.name} not found); "
                "give a .py file path or put the module on PYTHONPATH"
            ) from None
        raise
