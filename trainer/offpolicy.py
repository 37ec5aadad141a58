"""Async rollouts, one step off-policy (`async_rollouts: true`): step t+1's batch is generated while
step t scores, estimates and updates.

The same schedule as verl's one-step-off-policy recipe, PRIME-RL's `max_async_level = 1` or
AReaL's `max_head_offpolicyness = 1`; the correction is the trainer's existing truncated importance
weights (trainer/rollout/tis.py) against the logprobs of the policy that generated the batch.

Choices:
- A second copy of the policy (`snapshot`: deep-copied once, no gradients) and an `hf` engine over
  it generate in one background thread. torch releases the GIL inside its ops, so that thread's
  forward passes run while the main thread scores and updates (on CPU they share the cores; on
  GPU the thread uses its own CUDA stream). It costs one more copy of the weights in memory.
- Versions count optimizer updates: the starting weights are version 0, the trainer is at version
  t-1 before step t's update. At the start of step t, once step t's batch is in hand and the thread
  is idle, the trainer's weights (version t-1) are copied into the snapshot (only tensors that
  train: the adapter under LoRA) and step t+1's batch is submitted; step t+1 then trains version t
  on rollouts of version t-1, a staleness of exactly one update (step 1's batch is version 0, on
  policy). `async/policy_version` and `async/staleness_steps` say so every step.
- The engine draws with a private generator (`HFEngine(private_rng=True)`, Gumbel-max), since a
  thread that reseeded the global RNG would race with the trainer's own draws (LoRA dropout); a
  batch depends only on its seed and the snapshot's weights, never on thread timing, so an async run
  is as reproducible as a synchronous one.
- The loss's behaviour logprobs are the generating engine's sampling logprobs (`Rollout.logprobs`,
  recorded by the snapshot's engine); the PPO ratio's old policy stays the trainer's pre-update
  forward (the "proximal" policy of decoupled PPO), and the TIS weight min(pi_old / pi_behaviour,
  cap) corrects the one-step lag. That is why the config asks for `loss.tis_cap` with async on.
- Checkpoints: a periodic checkpoint waits for the pending batch and stores it (prompt indices,
  rollouts, version), so resuming from it is exact. A stop checkpoint keeps a pending batch that
  is already done; an unfinished one is cancelled and the prompt sampler rewound to before it, so
  the resumed run regenerates that batch from the checkpoint's weights (on policy: staleness 0 at
  that one step, which the metric shows).
- One process only (the snapshot would have to be sharded like the policy) and the `hf` engine
  only; the config refuses the rest (trainer/config.py).
"""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from trainer.interrupt import Interrupted
from trainer.rollout.base import EngineConfig, Rollout, SamplingParams
from trainer.rollout.hf import HFEngine

__all__ = ["AsyncRollouts", "Prefetch"]

WAIT_TICK_S = 0.05  # how often a wait for the pending batch looks at the stop flag


@dataclass
class Prefetch:
    """The batch of `step`, generated in the background from policy `version`."""

    step: int
    indices: np.ndarray  # (B,) prompt indices, drawn from the sampler
    version: int  # optimizer updates of the weights that generate it
    sampler_state: dict[str, Any]  # the sampler before `indices` were drawn (a stop rewinds to it)
    future: Future[tuple[list[Rollout], float]]  # (rollouts, generation seconds)
    stop: threading.Event = field(default_factory=threading.Event)

    def wait(self, stop_flag: threading.Event | None = None) -> tuple[list[Rollout], float]:
        """The rollouts; once `stop_flag` is set the generation is told to stop, and its
        GenerationInterrupted comes out of here."""
        while True:
            try:
                return self.future.result(timeout=WAIT_TICK_S)
            except FutureTimeout:
                if stop_flag is not None and stop_flag.is_set():
                    self.stop.set()

    def cancel(self) -> None:
        """Stop the generation and wait for the thread to let go of it."""
        self.stop.set()
        try:
            self.future.result()
        except Interrupted:
            pass

    def to_state(self) -> dict[str, Any]:
        """JSON for the checkpoint; only for a finished batch."""
        rollouts, seconds = self.future.result()
        return {"step": self.step, "indices": [int(i) for i in self.indices],
                "version": self.version, "sampler_state": self.sampler_state,
                "rollouts": [asdict(r) for r in rollouts], "seconds": seconds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Prefetch:
        done: Future[tuple[list[Rollout], float]] = Future()
        done.set_result(([Rollout(**r) for r in state["rollouts"]], float(state["seconds"])))
        return cls(step=int(state["step"]), indices=np.array(state["indices"], dtype=np.int64),
                   version=int(state["version"]), sampler_state=state["sampler_state"], future=done)


class AsyncRollouts:
    """The snapshot policy, its engine and the one thread that generates with it."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, config: EngineConfig):
        self.snapshot = copy.deepcopy(model)
        self.snapshot.requires_grad_(False)
        self.snapshot.eval()
        self.engine = HFEngine(self.snapshot, tokenizer, config, private_rng=True)
        self.version = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="async-rollouts")
        device = next(model.parameters()).device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def sync(self, model: torch.nn.Module, version: int) -> float:
        """Copy `model`'s trainable tensors into the snapshot (the thread must be idle); seconds."""
        start = time.perf_counter()
        source = dict(model.named_parameters())
        with torch.no_grad():
            for name, param in self.snapshot.named_parameters():
                if source[name].requires_grad:
                    param.copy_(source[name])
        if self._stream is not None:
            torch.cuda.synchronize()
        self.version = version
        return time.perf_counter() - start

    def submit(self, step: int, indices: np.ndarray, prompts: list[list[int]], n: int,
               params: SamplingParams, sampler_state: dict[str, Any]) -> Prefetch:
        """Start generating step `step`'s batch from the snapshot's current weights."""
        pending = Prefetch(step=step, indices=indices, version=self.version,
                           sampler_state=sampler_state, future=Future())
        pending.future = self._pool.submit(self._generate, prompts, n, params, pending.stop)
        return pending

    def _generate(self, prompts: list[list[int]], n: int, params: SamplingParams,
                  stop: threading.Event) -> tuple[list[Rollout], float]:
        start = time.perf_counter()
        if self._stream is None:
            rollouts = self.engine.generate(prompts, n, params, stop=stop)
        else:
            with torch.cuda.stream(self._stream):
                rollouts = self.engine.generate(prompts, n, params, stop=stop)
            self._stream.synchronize()
        return rollouts, time.perf_counter() - start

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

