"""Rollout engines behind one interface (`trainer.rollout.base`) and their registry.

An engine is a class `cls(model, tokenizer, config)` registered with `@register_engine(name)`.
Built-in engines are imported lazily on first `get_engine`, so importing this package (as the API
does to validate a config) never imports torch, transformers or vllm.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from trainer.rollout.base import Rollout, RolloutEngine, SamplingParams

__all__ = [
    "ENGINES",
    "Rollout",
    "RolloutEngine",
    "SamplingParams",
    "available_engines",
    "get_engine",
    "register_engine",
]

ENGINES: dict[str, Callable[..., RolloutEngine]] = {}
# name -> module that registers it when imported (kept lazy: vllm is an optional, heavy extra).
_BUILTIN = {"hf": "trainer.rollout.hf", "vllm": "trainer.rollout.vllm"}


def register_engine(name: str):
    """Class decorator registering an engine factory under `name`; a taken name is an error."""

    def deco(cls):
        if name in ENGINES:
            raise ValueError(f"rollout engine {name!r} is already registered ({ENGINES[name]!r})")
        ENGINES[name] = cls
        return cls

    return deco


def available_engines() -> list[str]:
    return sorted(set(ENGINES) | set(_BUILTIN))


def get_engine(name: str, model: Any, tokenizer: Any, config: Any) -> RolloutEngine:
    """Build engine `name` for (model, tokenizer, TrainConfig); an unknown name lists the valid."""
    if name not in ENGINES and name in _BUILTIN:
        try:
            importlib.import_module(_BUILTIN[name])
        except ImportError as e:
            raise ValueError(f"rollout engine {name!r} is not installed here: {e}") from e
    if name not in ENGINES:
        raise ValueError(f"unknown rollout engine {name!r}; valid names: {available_engines()}")
    return ENGINES[name](model, tokenizer, config)
