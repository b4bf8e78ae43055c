"""One registry helper for every plug-in kind (backbones, zoo entries, attribution methods, heads).

A :class:`Registry` maps names to objects (factories, classes, catalogue entries). It is a mutable
mapping, so tests may ``monkeypatch.setitem`` it, with three additions:

* :meth:`Registry.register` (a decorator) and :meth:`Registry.add` refuse a name registered twice;
* :meth:`Registry.lookup` / :meth:`Registry.create` raise a one-line :class:`UserError` naming the
  valid choices for an unknown name;
* discovery: a registry given ``package`` imports every module of that package (``pkgutil``) before
  its first read, so a built-in plug-in registers itself even when no ``__init__`` imports it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar, overload

from scout_exp.errors import UserError

T = TypeVar("T")
F = TypeVar("F")


class Registry(MutableMapping[str, T], Generic[T]):
    """Named plug-ins of one ``kind`` (e.g. ``"model"``), optionally discovered from ``package``.

    ``hint`` is appended to the unknown-name error (e.g. other accepted spellings).
    """

    def __init__(self, kind: str, package: str | None = None, hint: str = "") -> None:
        self.kind = kind
        self.package = package
        self.hint = hint
        self._items: dict[str, T] = {}
        self._discovered = package is None

    # -- discovery -----------------------------------------------------------------------------
    def discover(self) -> None:
        """Import every module of :attr:`package` (once; ``__main__`` modules are skipped).

        Raises whatever importing a module raises: a broken plug-in fails loudly, not by absence.
        """
        if self._discovered:
            return
        self._discovered = True  # before importing: a module that looks names up must not recurse
        assert self.package is not None
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if info.name != "__main__":
                importlib.import_module(f"{self.package}.{info.name}")

    # -- registration --------------------------------------------------------------------------
    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` and return it; ValueError when ``name`` is taken."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    @overload
    def register(self, name: F) -> F: ...
    @overload
    def register(self, name: str | None = None) -> Callable[[F], F]: ...
    def register(self, name: Any = None) -> Any:
        """Decorator registering a function or class under ``name`` (default: its ``__name__``).

        Usable bare (``@reg.register``) or called (``@reg.register("name")``).
        """
        if callable(name):
            self.add(name.__name__, name)
            return name

        def deco(obj: F) -> F:
            self.add(name or obj.__name__, obj)  # type: ignore[attr-defined, arg-type]
            return obj

        return deco

    # -- lookup --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Sorted registered names (after discovery)."""
        self.discover()
        return sorted(self._items)

    def lookup(self, name: str) -> T:
        """The object registered as ``name``; UserError listing the valid names otherwise."""
        self.discover()
        if name not in self._items:
            choices = ", ".join(sorted(self._items)) or "(none)"
            hint = f"{self.hint}" if self.hint else ""
            raise UserError(f"unknown {self.kind} {name!r}; choose one of: {choices}{hint}")
        return self._items[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory/class registered as ``name`` with ``args``/``kwargs`` (UserError if unknown)."""
        return self.lookup(name)(*args, **kwargs)  # type: ignore[operator]

    # -- MutableMapping ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        self.discover()
        return self._items[name]

    def __setitem__(self, name: str, obj: T) -> None:
        self._items[name] = obj

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    def __iter__(self) -> Iterator[str]:
        self.discover()
        return iter(self._items)

    def __len__(self) -> int:
        self.discover()
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._items

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"
