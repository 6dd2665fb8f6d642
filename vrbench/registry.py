"""Name -> class registries for estimators and problems, with entry-point plugins.

Built-in components register themselves with a decorator; other installed packages add
components through the entry-point groups ``vrbench.estimators`` and ``vrbench.problems``.
A plugin that fails to import is recorded (see :attr:`Registry.plugin_errors`) and never
breaks the rest of the registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from vrbench.errors import UnknownNameError

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component and where it came from."""

    name: str
    cls: T
    origin: str  # "builtin" or "plugin (<distribution>)"


class Registry(Generic[T]):
    """A registry of component classes of one kind, looked up by name."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = False
        self.plugin_errors: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator that registers a built-in component under ``name``."""

        def decorator(cls: T) -> T:
            self.add(name, cls, origin="builtin")
            return cls

        return decorator

    def add(self, name: str, cls: T, origin: str) -> None:
        if name in self._entries and self._entries[name].cls is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        cls.name = name  # type: ignore[attr-defined]
        self._entries[name] = Entry(name, cls, origin)

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                self.plugin_errors[ep.name] = (
                    f"{self.kind} name {ep.name!r} is already taken by "
                    f"{self._entries[ep.name].origin}"
                )
                continue
            try:
                cls = ep.load()
            except Exception as exc:  # a broken plugin must not break the registry
                self.plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                continue
            dist = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
            self.add(ep.name, cls, origin=f"plugin ({dist})")

    def entries(self) -> list[Entry[T]]:
        self._load_plugins()
        return [self._entries[k] for k in sorted(self._entries)]

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def entry(self, name: str) -> Entry[T]:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            valid = list(self._entries)
            close = difflib.get_close_matches(name, valid, n=1)
            raise UnknownNameError(self.kind, name, valid, close[0] if close else None) from None

    def get(self, name: str) -> T:
        return self.entry(name).cls

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
