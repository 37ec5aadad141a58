"""Rollout engines behind one interface (`trainer.rollout.base`) and their registry.

An engine is a class `cls(model, tokenizer, EngineConfig)` registered with `@register_engine(name)`.
Built-in engines are imported lazily on first `get_engine`, so importing this package (as the API
does to validate a config) never imports torch, transformers or vllm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainer.registry import Registry
from trainer.rollout.base import EngineConfig, Rollout, RolloutEngine, SamplingParams

__all__ = [
    "ENGINES",
    "EngineConfig",
    "Rollout",
    "RolloutEngine",
    "SamplingParams",
    "available_engines",
    "get_engine",
    "register_engine",
]

# name -> module that registers it when imported (kept lazy: vllm is an optional, heavy extra).
ENGINES: Registry[Callable[..., RolloutEngine]] = Registry(
    "rollout engine", lazy={"hf": "trainer.rollout.hf", "vllm": "trainer.rollout.vllm"})

register_engine = ENGINES.register  # class decorator: `@register_engine(name)`; a taken name is an error


def available_engines() -> list[str]:
    return ENGINES.names()


def get_engine(name: str, model: Any, tokenizer: Any,
               config: EngineConfig | None = None) -> RolloutEngine:
    """Build engine `name` for (model, tokenizer, config); an unknown name lists the valid."""
    return ENGINES.lookup(name)(model, tokenizer, config or EngineConfig())
