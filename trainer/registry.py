"""One registry type for every axis the loop switches on: estimators, rewards, rollout engines.

A `Registry[T]` is a `dict[str, T]` (so `name in R`, `sorted(R)`, `R.items()` and tests'
`monkeypatch.setitem` keep working) plus the two rules DESIGN.md sets for a registry:
- `add` / the `register(name)` decorator refuse a name that is already taken, naming what holds it,
  so two plugins cannot silently shadow each other;
- `lookup(name)` of an unknown name raises a ValueError listing the valid names.
`lazy` maps a name to the module that registers it on import, for components whose imports are
heavy or optional (vLLM): they appear in `names()` and are imported on first `lookup`.
`NoOptions` is the options model of a component that takes none.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = ["NoOptions", "Registry"]

T = TypeVar("T")


class NoOptions(BaseModel):
    """Options of a component that takes none; also the base of options models (unknown keys are
    an error, and options cannot change after validation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Registry(dict[str, T]):
    """name -> T for one kind of component (`kind` names it in error messages)."""

    def __init__(self, kind: str, *, lazy: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.lazy = dict(lazy or {})

    def add(self, name: str, item: T) -> T:
        """Register `item` under `name`; a taken name is a ValueError naming its holder."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered ({_origin(self[name])})")
        self[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: returns the decorated object unchanged."""

        def decorate(item: T) -> T:
            return self.add(name, item)

        return decorate

    def names(self) -> list[str]:
        """Every valid name, sorted, including lazy ones not imported yet."""
        return sorted(set(self) | set(self.lazy))

    def lookup(self, name: str) -> T:
        """The component `name`; an unknown name is a ValueError listing the valid names."""
        if name not in self and name in self.lazy:
            try:
                importlib.import_module(self.lazy[name])
            except ImportError as e:
                raise ValueError(f"{self.kind} {name!r} is not installed here: {e}") from e
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}")
        return self[name]


def _origin(item: object) -> str:
    qualname = getattr(item, "__qualname__", None)
    return f"{getattr(item, '__module__', '?')}.{qualname}" if qualname else str(item)
