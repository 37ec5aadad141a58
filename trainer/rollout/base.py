"""Rollout engine interface (docs/architecture.md): one `generate` for every backend.

Choices:
- `generate(prompts, n, params)` returns len(prompts) * n rollouts in prompt-major order, so the
  caller never re-sorts; `Rollout.prompt_index` says which prompt each came from.
- `logprobs` are under the *sampling* distribution (after temperature / top-k / top-p), the quantity
  an importance ratio against the sampler needs. The trainer recomputes its own logprobs for the
  update, so these are a diagnostic for `hf` and a saved forward pass for engines that can't share
  the module.
- `temperature == 0` means greedy decoding (used for evaluation); logprobs are then those of the
  raw logits.
- `SamplingParams.seed` makes a call deterministic by itself: the engine derives all its randomness
  from it and leaves the global RNG untouched, so a resumed run draws the same rollouts.
- `generate(..., stop=event)`: an engine checks the event while it generates (`hf`: between
  tokens) and raises `trainer.interrupt.GenerationInterrupted` once it is set, so a cancel does not
  wait for a long generation to finish (the loop's StopWatch sets it; trainer/interrupt.py).
- `generate(..., progress=fn)` calls `fn(done, total)` (rollouts) as it goes, for long calls such
  as the BASIS priors phase (n0 rollouts of every prompt). It must not change what is drawn: the
  hf engine reports between the batches it makes anyway; vLLM, one batched call, reports at the end.
- An engine is built as `cls(model, tokenizer, EngineConfig)`: the few job fields it reads, typed,
  rather than the whole TrainConfig (the loop resolves `dtype: auto` into `autocast_dtype` first, so
  engine and trainer compute in the same precision).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import threading

    import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens < 1:
            raise ValueError("top_k must be >= 0 and max_new_tokens >= 1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class EngineConfig:
    """What an engine reads from the job; the defaults suit an engine built alone (tests, benches)."""

    model: str = ""  # model directory, for engines that load their own copy of the weights (vLLM)
    engine_options: Mapping[str, Any] = field(default_factory=dict)  # checked by the engine's model
    seed: int = 0  # the job's seed, for engines with a process-wide generator of their own
    autocast_dtype: torch.dtype | None = None  # the trainer's compute dtype; None = float32


@dataclass
class Rollout:
    prompt_index: int  # index into the prompts passed to generate
    prompt_ids: list[int]
    response_ids: list[int]  # without padding; includes EOS if generated
    logprobs: list[float]  # sampling logprob of each response token
    text: str  # decoded response, special tokens removed
    finish_reason: str  # "stop" | "length"


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(
        self, prompts: list[list[int]], n: int, params: SamplingParams,
        stop: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Rollout]:
        """len(prompts) * n rollouts, prompt-major order; raises GenerationInterrupted once
        `stop` is set (checked while generating, as often as the engine can); `progress(done,
        total)` as it goes."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> float:
        """Push the trainer's weights into the engine; returns seconds spent."""
        ...

    def close(self) -> None: ...
