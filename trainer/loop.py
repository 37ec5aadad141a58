"""The training loop: sample batch -> rollouts -> rewards -> advantages -> update -> metrics.

`train(config, sink, run_dir=...)` is the one entry point (docs/architecture.md); the CLI, the
worker and the tests all call it. Read `train` and `_step` top to bottom; everything else is a
short helper. IO stays at the edges: metrics go to the sink, state to trainer/checkpoint.py.

Deliberate choices (and departures from textbook PPO):
- Old logprobs for the PPO ratio come from the trainer's own forward pass (logits / temperature),
  not from the engine's sampling logprobs: with one epoch they are that same forward detached, so
  the ratio is exactly 1 and the update is REINFORCE with the estimator's advantages; with more
  epochs they are recomputed once before the first epoch. Top-k/top-p truncation is therefore
  not importance-corrected (as in verl/TRL). The engine's logprobs are compared to ours as
  `rollout/logprob_gap` (mean |difference|), a cheap check that engine and trainer agree.
- Each PPO epoch is one optimizer step over the whole batch (gradients accumulated over
  micro-batches, normalised by whole-batch token or sequence counts so micro-batching does not
  change the loss). With no KL term and one epoch, sequences with zero advantage contribute no
  gradient and are not forwarded at all (they still count in the normaliser).
- LR: linear warmup over `warmup_steps`, then constant; a pure function of the step, so resume
  needs no scheduler state.
- Every random draw derives from (seed, step, purpose): sampling calls seed themselves and leave
  the global RNG alone, the prompt order is PromptSampler's seeded permutation, and the global RNG
  (LoRA dropout) is checkpointed. A resumed run reproduces an uninterrupted one's metrics exactly
  on CPU (tests/trainer/test_loop.py).
- BASIS offline phase: n0 rollouts of every training prompt from the starting policy before step
  1 -> priors, cached under `priors_cache_dir` by hash(model files, training rows, n0, sampling)
  (trainer/prior_cache.py; model loading is trainer/modeling.py).
  It runs when the training estimator or a probe shadow takes priors (`set_priors`); its cost
  counts in `rollouts/total` and `time/train_elapsed` only for a training estimator that uses it,
  and counts even when read from the cache (it is part of that estimator's budget; the cache only
  amortises it across runs).
- `time/train_elapsed`: cumulative rollout + reward + update + sync seconds (+ prior cost above),
  excluding evaluation and probe, which are measurement; it is the x-axis for comparing estimators.
  `time/elapsed` is plain wall-clock since the run (or its first segment) started.
- A stop request (`should_stop`) is honoured between steps and writes a checkpoint, so a cancelled
  job can be resumed with nothing lost. In a one-process run it is also polled (every 0.5 s, by
  trainer/interrupt.py's StopWatch) while rollouts are generated (the `hf` engine checks the flag
  between tokens) and while a batch is scored (a hostile reward can take minutes per batch): a
  stop there abandons the half-done step, writes no checkpoint for it, and the run resumes from
  the previous one. A multi-process job stops between steps; the worker kills its ranks for a
  cancel (worker/distributed.py).
- `async_rollouts`: step t+1's batch is generated in a background thread by a copy of the policy
  while step t scores and updates (trainer/offpolicy.py has the schedule, the versions and the
  checkpoint rules); `async/*` metrics report the generating version and the staleness.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainer import evaluate
from trainer.advantages import AdvantageBatch, Estimator, get_estimator
from trainer.checkpoint import (
    expected_checkpoint_bytes,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from trainer.config import ConfigError, TrainConfig
from trainer.data import PromptSampler, Row, load_jsonl, split
from trainer.distributed import (
    SINGLE,
    Dist,
    full_tensor,
    load_sharded_checkpoint,
    process_group,
    save_sharded_checkpoint,
    shard_model,
)
from trainer.features import prompt_features
from trainer.inspection import UnscorableGuard, select_samples
from trainer.interrupt import Interrupted, StopWatch
from trainer.loss import kl_reward_advantages, policy_loss, token_logprobs
from trainer.memory import (
    check_memory,
    enable_gradient_checkpointing,
    offloaded,
    plan_micro_batches,
)
from trainer.modeling import Prompts, Reference, load_model, resolve_device, tokenize
from trainer.offpolicy import AsyncRollouts, Prefetch
from trainer.prior_cache import cached_priors
from trainer.priors import TakesPriors, priors_from_rewards
from trainer.probe import ValueProbe
from trainer.rewards import RewardRunner
from trainer.rollout import EngineConfig, Rollout, RolloutEngine, SamplingParams, get_engine
from trainer.rollout.tis import tis_metrics, tis_weights
from trainer.sinks import (
    Histogram,
    MetricsSink,
    NullSink,
    PhaseProgress,
    Sample,
    advantage_histogram,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TrainResult", "train"]

OnCheckpoint = Callable[[int, Path], None]  # (step, checkpoint dir), after each checkpoint is written
# (step, about how many bytes it will take), before a checkpoint is written: the platform checks a
# storage quota here and raises to refuse it (nothing is written then).
BeforeCheckpoint = Callable[[int, int], None]

# Purposes of derived seeds (never reorder: checkpoints of older runs rely on them).
_ROLLOUT, _PROBE, _PRIORS = 0, 1, 2


@dataclass
class TrainResult:
    steps: int
    stopped: bool
    initial_eval_accuracy: float | None
    final_eval_accuracy: float | None
    seconds: float


@dataclass
class Counters:
    """Cumulative figures that survive a resume (saved in state.json)."""

    step: int = 0
    rollouts_total: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    initial_eval_accuracy: float | None = None
    last_eval_accuracy: float | None = None


@dataclass
class Run:
    """Everything a step needs; built once by `_setup`."""

    config: TrainConfig
    sink: MetricsSink
    run_dir: Path
    model: torch.nn.Module  # the policy (a peft model under LoRA)
    tokenizer: PreTrainedTokenizerBase
    engine: RolloutEngine
    reference: Reference | None  # frozen KL reference; None without a KL term
    optimizer: torch.optim.Optimizer
    rewarder: RewardRunner
    estimator: Estimator
    probe: ValueProbe | None
    sampler: PromptSampler
    train: Prompts
    eval: Prompts
    device: torch.device
    autocast_dtype: torch.dtype | None
    guard: UnscorableGuard  # warns on / fails runs whose rewards cannot score the completions
    dist: Dist = SINGLE
    counters: Counters = field(default_factory=Counters)
    stop_check: Callable[[], bool] | None = None  # polled during generation (one process only)
    prefetch: AsyncRollouts | None = None  # async_rollouts: the generating copy and its thread
    pending: Prefetch | None = None  # async_rollouts: the next step's batch, in flight or done
    started: float = field(default_factory=time.perf_counter)


# ============================================================================ entry point


def train(
    config: TrainConfig,
    sink: MetricsSink,
    *,
    run_dir: Path,
    should_stop: Callable[[], bool] = lambda: False,
    on_status: Callable[[str], None] = lambda s: None,
    on_checkpoint: OnCheckpoint = lambda step, path: None,
    resume: bool = True,
    before_checkpoint: BeforeCheckpoint = lambda step, nbytes: None,
) -> TrainResult:
    """Run (or resume) a training job to `config.max_steps` or until `should_stop()`.

    Under torchrun (config.num_processes > 1) every rank calls this; rank 0 alone writes to `sink`
    and calls the callbacks, and its `should_stop` decides for all (trainer/distributed.py)."""
    run_dir = Path(run_dir)
    config.check_paths()
    train_rows, eval_rows = _load_rows(config)  # bad data fails here, before any model loads
    device, autocast_dtype = resolve_device(config)
    estimate = check_memory(config, train_rows, device, 2 if autocast_dtype else 4)  # no weights read
    with process_group(config.num_processes, device.type) as dist:
        if not dist.is_main:
            sink, on_status = NullSink(), lambda s: None
            on_checkpoint = lambda step, path: None  # noqa: E731
            before_checkpoint = lambda step, nbytes: None  # noqa: E731
        sink.log_event("memory", estimate.summary(),
                       {"peak_bytes": estimate.peak, **estimate.terms, **estimate.phases})
        return _train(config, sink, run_dir, dist, train_rows, eval_rows,
                      lambda: dist.broadcast(should_stop() if dist.is_main else None),
                      on_status, on_checkpoint, resume, before_checkpoint)


def _train(config: TrainConfig, sink: MetricsSink, run_dir: Path, dist: Dist,
           train_rows: list[Row], eval_rows: list[Row], should_stop: Callable[[], bool],
           on_status: Callable[[str], None], on_checkpoint: OnCheckpoint,
           resume: bool, before_checkpoint: BeforeCheckpoint) -> TrainResult:
    run = _setup(config, sink, run_dir, train_rows, eval_rows, dist)
    # The reward stop watch polls from a thread at any moment: across ranks that cannot be a
    # collective, so a multi-process job honours a stop between steps only (trainer/distributed.py).
    run.rewarder.should_stop = None if dist.enabled else should_stop
    run.stop_check = None if dist.enabled else should_stop  # generation: the same rule
    try:
        ckpt = latest_checkpoint(run_dir) if resume else None
        if ckpt is not None:
            _restore(run, ckpt)
            run.engine.sync_weights(run.model)  # the engine was built before the restore
            sink.log_event("resume", f"resumed from {ckpt.name}", {"step": run.counters.step})
        else:
            try:
                _start_fresh(run, on_status)
            except Interrupted:  # during prior estimation or the step-0 evaluation
                sink.log_event("stopped", "stop requested before the first step")
                return TrainResult(steps=0, stopped=True, initial_eval_accuracy=None,
                                   final_eval_accuracy=None, seconds=0.0)
        on_status("running")
        stopped = _run_steps(run, should_stop, on_checkpoint, before_checkpoint)
        c = run.counters
        return TrainResult(steps=c.step, stopped=stopped,
                           initial_eval_accuracy=c.initial_eval_accuracy,
                           final_eval_accuracy=c.last_eval_accuracy,
                           seconds=c.wall_seconds)
    finally:
        if run.pending is not None:
            run.pending.cancel()
        if run.prefetch is not None:
            run.prefetch.close()
        run.rewarder.close()
        run.engine.close()


def _run_steps(run: Run, should_stop: Callable[[], bool], on_checkpoint: OnCheckpoint,
               before_checkpoint: BeforeCheckpoint) -> bool:
    cfg = run.config
    while run.counters.step < cfg.max_steps:
        if should_stop():
            _checkpoint(run, on_checkpoint, before_checkpoint, stopping=True)
            run.sink.log_event("stopped", f"stop requested after step {run.counters.step}")
            return True
        run.counters.step += 1
        step = run.counters.step
        last = step == cfg.max_steps
        try:
            metrics, histograms, samples = _step(run, step)
            if _every(step, cfg.eval_every) or last:
                metrics["eval/accuracy"] = _evaluate(run)
                run.counters.last_eval_accuracy = metrics["eval/accuracy"]
        except Interrupted as exc:
            run.counters.step -= 1
            run.sink.log_event("stopped", f"{exc} step {step}; the step is abandoned (a resume "
                               "starts after the last checkpoint)")
            return True
        run.counters.wall_seconds += time.perf_counter() - run.started
        run.started = time.perf_counter()
        metrics["time/elapsed"] = run.counters.wall_seconds
        run.sink.log_step(step, metrics, histograms, samples)
        if _every(step, cfg.checkpoint_every) or last:
            _checkpoint(run, on_checkpoint, before_checkpoint)
    return False


def _every(step: int, n: int) -> bool:
    return n > 0 and step % n == 0


# ================================================================================== step


def _step(run: Run, step: int) -> tuple[dict[str, float], dict[str, Histogram], list[Sample]]:
    cfg, dist = run.config, run.dist
    t0 = time.perf_counter()
    idx, rollouts, async_info = _rollouts(run, step)  # idx (B,): the same on every rank
    mine = idx[dist.block(len(idx))]  # (B / world,) this rank's prompts
    t1 = time.perf_counter()
    answers = [run.train.answers[mine[r.prompt_index]] for r in rollouts]
    local_rewards = _score(run, rollouts, answers)  # (B*k / world,) NaN = unscorable
    t2 = time.perf_counter()
    # The estimator sees the whole batch on every rank (rank order == single-process order).
    rewards = np.array(dist.gather(local_rewards.tolist()), dtype=np.float64)  # (B*k,)
    lengths = dist.gather([len(r.response_ids) for r in rollouts])
    texts = dist.gather([r.text for r in rollouts])
    finish = dist.gather([r.finish_reason for r in rollouts])
    prompt_ids = np.array([run.train.ids[i] for i in idx])
    first = dist.block(len(idx)).start
    owner = dist.gather([first + r.prompt_index for r in rollouts])  # (B*k,) positions in idx
    all_answers = [run.train.answers[idx[o]] for o in owner]
    run.guard.check(step, texts, all_answers, rewards)  # the whole batch: every rank decides alike
    feats = _prompt_features(run, idx)  # (B, d) or None
    batch = AdvantageBatch(rewards=rewards, prompt_ids=prompt_ids[owner],
                           features=None if feats is None else feats[owner])
    result = run.estimator.compute(batch)
    t3 = time.perf_counter()
    probe_metrics = _probe(run, step, idx, batch)
    t4 = time.perf_counter()
    update = _update(run, rollouts, result.advantages[dist.block(len(rewards))], step)
    t5 = time.perf_counter()
    async_sync = async_info.pop("time/async_sync", 0.0)  # inside t1 - t0; reported as sync
    sync = run.engine.sync_weights(run.model) + async_sync
    t6 = time.perf_counter()
    generate_seconds = async_info.get("async/generate_seconds", t1 - t0)

    seconds = (t1 - t0) + (t2 - t1) + (t3 - t2) + (t5 - t4) + (t6 - t5)
    run.counters.train_seconds += seconds
    run.counters.rollouts_total += len(lengths)  # every rank's
    metrics = {
        **_reward_metrics(rewards),
        **_advantage_metrics(result.advantages),
        **result.info,
        **update.metrics(),
        **probe_metrics,
        **async_info,
        "response/length_mean": float(np.mean(lengths)),
        "rollout/stop_frac": float(np.mean([f == "stop" for f in finish])),
        "time/rollout": t1 - t0 - async_sync,
        "time/reward": t2 - t1,
        "time/advantage": t3 - t2,
        "time/probe": t4 - t3,
        "time/update": t5 - t4,
        "time/sync": sync,
        "time/step": t6 - t0,
        "time/train_elapsed": run.counters.train_seconds,
        "throughput/tokens_per_s": sum(lengths) / max(generate_seconds, 1e-9),
        "rollouts/total": float(run.counters.rollouts_total),
    }
    samples = select_samples(
        cfg.samples_per_step, prompt_ids=batch.prompt_ids.tolist(),
        prompt_tokens=[run.train.tokens[idx[o]] for o in owner],
        completions=texts, answers=all_answers, finish_reasons=finish, rewards=rewards,
        advantages=result.advantages, baselines=result.baselines,
        decode=lambda ids: run.tokenizer.decode(ids, skip_special_tokens=True))
    return metrics, {"advantage": advantage_histogram(result.advantages)}, samples


def _rollouts(run: Run, step: int) -> tuple[np.ndarray, list[Rollout], dict[str, float]]:
    """Step `step`'s prompt indices (B,), this rank's rollouts and the async figures ({} when
    synchronous). Async: take the batch prefetched during the previous step (generate it now at
    step 1 or after a resume without one), then start the next one from the trainer's current
    weights (trainer/offpolicy.py)."""
    cfg, k, dist = run.config, run.config.rollouts_per_prompt, run.dist
    if run.prefetch is None:
        idx = run.sampler.next_batch()
        mine = idx[dist.block(len(idx))]
        params = _sampling(cfg, _seed(cfg.seed, step, _ROLLOUT, dist.rank))
        return idx, _generate(run, [run.train.tokens[i] for i in mine], k, params), {}
    start = time.perf_counter()
    pending, run.pending, sync = run.pending, None, 0.0
    if pending is None or pending.step != step:
        sync += run.prefetch.sync(run.model, step - 1)
        pending = _submit(run, step)
    with StopWatch(run.stop_check, name="generation-stop-watch") as watch:
        rollouts, generate_seconds = pending.wait(watch.fired)
    waited = time.perf_counter() - start
    if step < cfg.max_steps:  # the thread is idle: it takes version step-1 and starts step+1
        sync += run.prefetch.sync(run.model, step - 1)
        run.pending = _submit(run, step + 1)
    return pending.indices, rollouts, {
        "async/policy_version": float(pending.version),
        "async/staleness_steps": float(step - 1 - pending.version),
        "async/wait": waited,
        "async/generate_seconds": generate_seconds,
        "time/async_sync": sync,
    }


def _submit(run: Run, step: int) -> Prefetch:
    assert run.prefetch is not None
    cfg, before = run.config, run.sampler.state_dict()
    idx = run.sampler.next_batch()
    return run.prefetch.submit(step, idx, [run.train.tokens[i] for i in idx],
                               cfg.rollouts_per_prompt, _sampling(cfg, _seed(cfg.seed, step, _ROLLOUT)),
                               before)


def _generate(run: Run, prompts: list[list[int]], n: int, params: SamplingParams,
              progress: Callable[[int, int], None] | None = None) -> list[Rollout]:
    """The engine's rollouts; a stop request during them raises GenerationInterrupted."""
    if run.stop_check is None:
        if progress is None:  # engines outside this repo may not take `progress` yet
            return run.engine.generate(prompts, n, params)
        return run.engine.generate(prompts, n, params, progress=progress)
    with StopWatch(run.stop_check, name="generation-stop-watch") as watch:
        if progress is None:
            return run.engine.generate(prompts, n, params, stop=watch.fired)
        return run.engine.generate(prompts, n, params, stop=watch.fired, progress=progress)


def _sampling(cfg: TrainConfig, seed: int, greedy: bool = False) -> SamplingParams:
    s = cfg.sampling
    return SamplingParams(temperature=0.0 if greedy else s.temperature, top_p=s.top_p,
                          top_k=s.top_k, max_new_tokens=s.max_new_tokens, seed=seed)


def _seed(seed: int, step: int, purpose: int, rank: int = 0) -> int:
    """Rank 0 keeps the single-process seed (older checkpoints resume unchanged)."""
    entropy = [seed, step, purpose] + ([rank] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


def _score(run: Run, rollouts: list[Rollout], answers: list[str]) -> np.ndarray:
    scores = run.rewarder.score([r.text for r in rollouts], answers)
    return np.array([np.nan if s is None else s for s in scores], dtype=np.float64)


def _reward_metrics(rewards: np.ndarray) -> dict[str, float]:
    ok = ~np.isnan(rewards)
    scored = rewards[ok]
    return {
        "reward/mean": float(scored.mean()) if scored.size else 0.0,
        "reward/accuracy": float((scored >= 1.0).mean()) if scored.size else 0.0,
        "reward/unscorable_frac": float(1.0 - ok.mean()),
    }


def _advantage_metrics(adv: np.ndarray) -> dict[str, float]:
    return {
        "adv/mean": float(adv.mean()),
        "adv/std": float(adv.std()),
        "adv/abs_mean": float(np.abs(adv).mean()),
        "adv/zero_frac": float((adv == 0).mean()),
    }


# ================================================================================ update


def _lr(cfg: TrainConfig, step: int) -> float:
    warm = cfg.optimizer.warmup_steps
    return cfg.optimizer.lr * (min(1.0, step / warm) if warm else 1.0)


@dataclass
class _Batch:
    """Right-padded sequences for the trainer's forward: all (n, L)."""

    input_ids: torch.Tensor
    attention: torch.Tensor
    response: torch.Tensor  # (n, L-1) float: 1 where position t predicts a response token


def _collate(rollouts: list[Rollout], pad_id: int) -> _Batch:
    seqs = [r.prompt_ids + r.response_ids for r in rollouts]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros(len(seqs), width, dtype=torch.long)
    response = torch.zeros(len(seqs), width - 1)
    for i, (r, s) in enumerate(zip(rollouts, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        attention[i, : len(s)] = 1
        response[i, len(r.prompt_ids) - 1 : len(s) - 1] = 1.0
    return _Batch(ids, attention, response)


def _forward_logprobs(run: Run, model: Reference, b: _Batch) -> torch.Tensor:
    """(n, L-1) logprobs of each next token under logits / temperature."""
    with _autocast(run):
        logits = model(input_ids=b.input_ids.to(run.device),
                       attention_mask=b.attention.to(run.device)).logits
    logits = logits[:, :-1].float() / run.config.sampling.temperature
    return token_logprobs(logits, b.input_ids[:, 1:].to(run.device))


def _autocast(run: Run) -> contextlib.AbstractContextManager[object]:
    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    autocast: contextlib.AbstractContextManager[object] = torch.autocast(
        run.device.type, dtype=run.autocast_dtype)
    return autocast


@dataclass
class UpdateStats:
    """One update's figures; `metrics()` names them as docs/architecture.md lists them.

    Loss figures are sums over micro-batches (each already normalised by whole-batch totals, so the
    sum is the batch value), averaged over PPO epochs; the logprob gap and TIS figures come from the
    first epoch only, weighted by response tokens.
    """

    lr: float
    with_kl: bool  # a reference model is loaded: report `kl/mean`
    with_tis: bool  # truncated importance sampling is on: report `tis/*`
    grad_norm: float = 0.0  # of the last epoch, before clipping
    policy: float = 0.0
    kl: float = 0.0  # the KL term of the loss (kl_coef * the loss's estimator; 0 if KL in reward)
    kl_mean: float = 0.0  # k3's estimate of KL(pi || ref), whatever the loss uses
    clip_frac: float = 0.0
    tokens: float = 0.0  # response tokens seen in the first epoch
    gap_sum: float = 0.0  # sum over those tokens of |trainer - engine logprob|
    tis_weight_sum: float = 0.0  # token-weighted sums of tis_metrics' figures
    tis_clipped_sum: float = 0.0

    def add_loss(self, stats: dict[str, torch.Tensor], epochs: int) -> None:
        self.policy += float(stats["policy"]) / epochs
        self.kl += float(stats["kl"]) / epochs
        self.kl_mean += float(stats["kl_mean"]) / epochs
        self.clip_frac += float(stats["clip_frac"]) / epochs

    def summed(self, dist: Dist) -> UpdateStats:
        """Every rank's sums added up (the loss figures are normalised by global totals)."""
        t = dist.sum({"policy": self.policy, "kl": self.kl, "kl_mean": self.kl_mean,
                      "clip_frac": self.clip_frac, "tokens": self.tokens, "gap_sum": self.gap_sum,
                      "tis_weight_sum": self.tis_weight_sum,
                      "tis_clipped_sum": self.tis_clipped_sum})
        return replace(self, policy=t["policy"], kl=t["kl"], kl_mean=t["kl_mean"],
                       clip_frac=t["clip_frac"], tokens=t["tokens"], gap_sum=t["gap_sum"],
                       tis_weight_sum=t["tis_weight_sum"], tis_clipped_sum=t["tis_clipped_sum"])

    def metrics(self) -> dict[str, float]:
        out = {
            "loss/policy": self.policy,
            "loss/kl": self.kl,
            "loss/clip_frac": self.clip_frac,
            "optim/grad_norm": self.grad_norm,
            "optim/lr": self.lr,
            "rollout/logprob_gap": self.gap_sum / max(self.tokens, 1.0),
        }
        if self.with_kl:
            out["kl/mean"] = self.kl_mean
        if self.with_tis:
            out["tis/mean_weight"] = self.tis_weight_sum / max(self.tokens, 1.0)
            out["tis/clipped_frac"] = self.tis_clipped_sum / max(self.tokens, 1.0)
        return out


def _update(run: Run, rollouts: list[Rollout], advantages: np.ndarray, step: int) -> UpdateStats:
    cfg, opt_cfg = run.config, run.config.optimizer
    out = UpdateStats(lr=_lr(cfg, step), with_kl=run.reference is not None,
                      with_tis=cfg.loss.tis_cap is not None)
    for group in run.optimizer.param_groups:
        group["lr"] = out.lr
    adv = torch.tensor(advantages, dtype=torch.float32)  # (B*k / world,)
    pad = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
    plan = plan_micro_batches([len(r.prompt_ids) + len(r.response_ids) for r in rollouts],
                              opt_cfg.micro_batch_size, opt_cfg.max_tokens_per_micro_batch)
    chunks = [[rollouts[i] for i in part] for part in plan]
    batches = [(_collate(c, pad), adv[part]) for c, part in zip(chunks, plan, strict=True)]
    # Normalisers and the number of passes are the whole batch's (every rank's): the loss is the
    # single-process loss, and FSDP's collectives see the same passes on every rank.
    totals = run.dist.sum({"total_tokens": float(sum(b.response.sum() for b, _ in batches)),
                           "total_seqs": float(len(rollouts))})
    weight = float(run.dist.world)  # FSDP averages the ranks' gradients; the loss wants their sum
    if run.dist.enabled:
        filler = (_collate(rollouts[:1], pad), torch.zeros(1))
        chunks += [rollouts[:1]] * (run.dist.max(len(batches)) - len(batches))
        batches += [filler] * (len(chunks) - len(batches))
    multi = cfg.loss.ppo_epochs > 1
    kl_in_reward = run.reference is not None and cfg.loss.kl_in == "reward"
    old = [_no_grad_logprobs(run, run.model, b) if multi else None for b, _ in batches]
    with offloaded(run.reference, run.device,
                   cfg.memory.offload_reference and not run.dist.enabled):
        ref = [_no_grad_logprobs(run, run.reference, b) if run.reference else None
               for b, _ in batches]
    if kl_in_reward:  # reward - kl_coef * sequence log ratio, before the update (trainer/loss.py)
        ratio = torch.zeros(len(rollouts))  # (B*k / world,) rollout order; _seq_log_ratio's is plan order
        ratio[[i for part in plan for i in part]] = _seq_log_ratio(run, batches, ref)[:len(rollouts)]
        adv = kl_reward_advantages(adv, ratio, cfg.loss.kl_coef)
        batches = [(b, adv[part]) for (b, _), part in zip(batches, plan, strict=False)] \
            + batches[len(plan):]
    skip_zero = not multi and run.reference is None and not run.dist.enabled
    run.model.train()
    for epoch in range(cfg.loss.ppo_epochs):
        run.optimizer.zero_grad(set_to_none=True)
        for j, (b, a) in enumerate(batches):
            if skip_zero and not bool((a != 0).any()):
                continue
            real = j < len(plan)  # fillers: a zero-weight pass that keeps ranks in step
            lp = _forward_logprobs(run, run.model, b)  # (n, L-1)
            mask = b.response.to(run.device)
            old_j = old[j]
            base = lp.detach() if old_j is None else old_j
            weights = None
            n = float(b.response.sum())
            if cfg.loss.tis_cap is not None:
                engine_lp = _engine_logprobs(lp, chunks[j])
                weights = tis_weights(base, engine_lp, cfg.loss.tis_cap)
                if epoch == 0 and real:
                    tis = tis_metrics(base, engine_lp, mask, cfg.loss.tis_cap)
                    out.tis_weight_sum += tis["tis/mean_weight"] * n
                    out.tis_clipped_sum += tis["tis/clipped_frac"] * n
            loss, stats = policy_loss(
                lp, base, a.to(run.device), mask,
                clip_eps=cfg.loss.clip_eps, aggregation=cfg.loss_aggregation,
                kl_coef=0.0 if kl_in_reward else cfg.loss.kl_coef, ref_logprobs=ref[j],
                kl_kind=cfg.loss.kl_estimator, token_weights=weights, **totals,
                max_tokens=cfg.sampling.max_new_tokens)
            (loss * (weight if real else 0.0)).backward()
            if not real:
                continue
            out.add_loss(stats, cfg.loss.ppo_epochs)
            if epoch == 0:
                out.gap_sum += _logprob_gap(lp.detach(), chunks[j], mask)
                out.tokens += n
        out.grad_norm = _clip(run, opt_cfg.grad_clip)
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)  # gradients need no memory during the rollouts
    return out.summed(run.dist)


def _seq_log_ratio(run: Run, batches: list[tuple[_Batch, torch.Tensor]],
                   ref: list[torch.Tensor | None]) -> torch.Tensor:
    """(B,) sum over each sequence's response tokens of log pi - log ref, without grad."""
    out = []
    for (b, _), r in zip(batches, ref, strict=True):
        assert r is not None, "the KL in the reward needs the reference's logprobs"
        lp = _no_grad_logprobs(run, run.model, b)
        out.append(((lp - r) * b.response.to(lp.device)).sum(-1).cpu())
    return torch.cat(out)


def _no_grad_logprobs(run: Run, model: Reference, b: _Batch) -> torch.Tensor:
    with torch.no_grad():
        return _forward_logprobs(run, model, b)


def _engine_logprobs(lp: torch.Tensor, rollouts: list[Rollout]) -> torch.Tensor:
    """The engine's sampling logprobs laid out like the trainer's lp (n, L-1); 0 off-response."""
    out = torch.zeros_like(lp, dtype=torch.float32)
    for i, r in enumerate(rollouts):
        start = len(r.prompt_ids) - 1
        out[i, start:start + len(r.response_ids)] = torch.tensor(r.logprobs, dtype=torch.float32)
    return out.to(lp.dtype)


def _logprob_gap(lp: torch.Tensor, rollouts: list[Rollout], mask: torch.Tensor) -> float:
    """Sum over response tokens of |trainer logprob - engine logprob|; lp, mask (n, L-1)."""
    gap = (lp.float() - _engine_logprobs(lp, rollouts).float()).abs() * mask
    return float(gap.sum())


def _clip(run: Run, max_norm: float) -> float:
    params = [p for p in run.model.parameters() if p.requires_grad]
    if all(p.grad is None for p in params):
        return 0.0
    # get_total_norm + clip_grads_with_norm_ is clip_grad_norm_, with the (FSDP) DTensor norm
    # made whole in between, as torchtitan does.
    norm = full_tensor(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
    torch.nn.utils.clip_grads_with_norm_(params, max_norm if max_norm > 0 else float("inf"), norm)
    return float(norm)


# ================================================================================== eval


def _evaluate(run: Run) -> float:
    """Greedy accuracy on the held-out prompts (unscorable counts as wrong), by the evaluation
    jobs' code path (trainer/evaluate.py) with k = 1; each rank samples its block."""
    if not run.eval.ids:
        return float("nan")
    mine, valid = run.dist.padded_block(len(run.eval.ids))  # same size on every rank
    rollouts = _generate(run, [run.eval.tokens[i] for i in mine], 1,
                         _sampling(run.config, 0, greedy=True))[:valid]
    rewards = evaluate.score(run.rewarder.score, rollouts, [run.eval.answers[i] for i in mine[:valid]])
    rewards = np.array(run.dist.gather(rewards.tolist()), dtype=np.float64)  # (N,)
    return evaluate.summarize(rewards.reshape(-1, 1)).accuracy


def _prompt_features(run: Run, idx: np.ndarray) -> np.ndarray | None:
    """(B, d) prompt features of the batch, computed only when an estimator (or shadow) reads
    them; counted in time/advantage since they are part of that estimator's cost."""
    if not (run.estimator.uses_features or (run.probe is not None and run.probe.uses_features)):
        return None
    pad = run.tokenizer.pad_token_id if run.tokenizer.pad_token_id is not None else 0
    return prompt_features(run.model, [run.train.tokens[i] for i in idx], pad, run.device,
                           _autocast(run))


# ================================================================================= probe


def _probe(run: Run, step: int, idx: np.ndarray, batch: AdvantageBatch) -> dict[str, float]:
    """Shadows see every step; on probe steps, M rollouts on the first probe prompts."""
    if run.probe is None:
        return {}
    first = np.arange(len(idx)) * run.config.rollouts_per_prompt  # first rollout of each prompt
    run.probe.observe(batch.subset(first))
    if not _every(step, run.config.probe_every):
        return {}
    p, m = run.config.probe_prompts, run.config.probe_rollouts
    rollouts = _generate(run, [run.train.tokens[i] for i in idx[:p]], m,
                         _sampling(run.config, _seed(run.config.seed, step, _PROBE)))
    rewards = _score(run, rollouts, [run.train.answers[idx[r.prompt_index]] for r in rollouts])
    out = run.probe.measure(np.arange(p), rewards.reshape(p, m))
    run.sink.log_event("probe", f"value probe at step {step}", {
        "step": step, "prompt_ids": [run.train.ids[i] for i in idx[:p]],
        "errors": run.probe.last_detail})
    return out


# ============================================================================ priors phase


def _start_fresh(run: Run, on_status: Callable[[str], None]) -> None:
    """Step 0: BASIS offline priors (if anyone needs them) and the initial eval."""
    takes_priors = run.estimator if isinstance(run.estimator, TakesPriors) else None
    metrics: dict[str, float] = {}
    if run.config.n0 > 0 and (takes_priors is not None or (run.probe and run.probe.needs_priors)):
        on_status("estimating_priors")
        offline = cached_priors(run.config, run.train, run.sink, lambda: _reference_priors(run))
        if takes_priors is not None:
            takes_priors.set_priors(run.train.ids, offline.priors, n0=run.config.n0)
            run.counters.rollouts_total += offline.rollouts
            run.counters.train_seconds += offline.seconds
        if run.probe is not None:
            run.probe.set_priors(run.train.ids, offline.priors, run.config.n0)
        metrics.update({"priors/seconds": offline.seconds,
                        "priors/rollouts": float(offline.rollouts),
                        "priors/cached": float(offline.cached),
                        "priors/mean": float(np.mean(offline.priors))})
    t = time.perf_counter()
    metrics["eval/accuracy"] = _evaluate(run)
    run.counters.initial_eval_accuracy = run.counters.last_eval_accuracy = metrics["eval/accuracy"]
    metrics["time/eval"] = time.perf_counter() - t
    metrics["rollouts/total"] = float(run.counters.rollouts_total)
    metrics["time/train_elapsed"] = run.counters.train_seconds
    run.sink.log_step(0, metrics, {})


def _reference_priors(run: Run) -> tuple[np.ndarray, int]:
    """(priors (N,), rollouts drawn): n0 rollouts of every training prompt from the policy."""
    cfg = run.config
    mine, valid = run.dist.padded_block(len(run.train.ids))  # each rank its block of prompts
    # Progress between the engine's own batches (events, so the console, `basis jobs logs` and
    # Job detail show it); it draws nothing, so the priors are those of a silent run.
    progress = PhaseProgress("estimating priors: rollouts",
                             lambda line, data: run.sink.log_event("priors", line, data))
    rollouts = _generate(run, [run.train.tokens[i] for i in mine], cfg.n0,
                         _sampling(cfg, _seed(cfg.seed, 0, _PRIORS, run.dist.rank)),
                         progress=progress)
    rollouts = rollouts[:valid * cfg.n0]
    rewards = _score(run, rollouts, [run.train.answers[mine[r.prompt_index]] for r in rollouts])
    rewards = np.array(run.dist.gather(rewards.tolist()), dtype=np.float64)
    return priors_from_rewards(rewards.reshape(len(run.train.ids), cfg.n0)), len(rewards)


# ================================================================================= setup


def _load_rows(cfg: TrainConfig) -> tuple[list[Row], list[Row]]:
    rows = load_jsonl(cfg.dataset)
    if cfg.eval_dataset is not None:
        train_rows, eval_rows = rows, load_jsonl(cfg.eval_dataset)
    else:
        try:
            train_rows, eval_rows = split(rows, cfg.eval_fraction, seed=cfg.eval_seed)
        except ValueError as e:
            raise ConfigError(f"eval_fraction: {e}") from None
    if cfg.eval_size is not None:
        eval_rows = eval_rows[: cfg.eval_size]
    if cfg.batch_size > len(train_rows):
        raise ConfigError(f"batch_size: {cfg.batch_size} exceeds the {len(train_rows)} training "
                          f"prompts; lower batch_size or add prompts")
    return train_rows, eval_rows


def _setup(cfg: TrainConfig, sink: MetricsSink, run_dir: Path, train_rows: list[Row],
           eval_rows: list[Row], dist: Dist = SINGLE) -> Run:
    device, autocast_dtype = resolve_device(cfg)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    if cfg.cpu_threads is not None:  # process-wide: a job owns its process (CLI or worker)
        torch.set_num_threads(cfg.cpu_threads)
    model, tokenizer, reference = load_model(cfg, device)
    if cfg.memory.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if dist.enabled:
        shard_model(model, autocast_dtype)
        if isinstance(reference, torch.nn.Module):
            shard_model(reference, autocast_dtype, offload=cfg.memory.offload_reference)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optimizer.lr, betas=cfg.optimizer.betas,
                                  weight_decay=cfg.optimizer.weight_decay)
    engine_config = EngineConfig(model=cfg.model, engine_options=cfg.engine_options,
                                 seed=cfg.seed, autocast_dtype=autocast_dtype)
    engine = get_engine(cfg.engine, model, tokenizer, engine_config)
    return Run(
        config=cfg, sink=sink, run_dir=run_dir, model=model, tokenizer=tokenizer, engine=engine,
        reference=reference, optimizer=optimizer,
        rewarder=RewardRunner(cfg.reward, cfg.reward_options, timeout_s=cfg.reward_timeout,
                              workers=cfg.reward_workers),
        estimator=get_estimator(cfg.estimator, **cfg.estimator_options),
        probe=ValueProbe(cfg.estimator, cfg.estimator_options) if cfg.probe_every else None,
        sampler=PromptSampler(len(train_rows), cfg.batch_size, seed=cfg.seed),
        train=tokenize(train_rows, tokenizer), eval=tokenize(eval_rows, tokenizer),
        device=device, autocast_dtype=autocast_dtype, dist=dist,
        guard=UnscorableGuard(cfg.reward, cfg.unscorable_fail_steps, sink),
        prefetch=AsyncRollouts(model, tokenizer, engine_config) if cfg.async_rollouts else None,
    )


# ============================================================================ checkpoints


def _checkpoint(run: Run, on_checkpoint: OnCheckpoint, before_checkpoint: BeforeCheckpoint,
                stopping: bool = False) -> None:
    before_checkpoint(run.counters.step, expected_checkpoint_bytes(run.model, run.optimizer))
    pending = _pending_state(run, stopping)  # first: it may rewind the sampler
    state = {
        "counters": asdict(run.counters),
        "sampler": run.sampler.state_dict(),
        "estimator": run.estimator.state_dict(),
        "probe": run.probe.state_dict() if run.probe else None,
        **({"async": pending} if pending is not None else {}),
    }
    if run.dist.enabled:
        path = save_sharded_checkpoint(run.run_dir, run.counters.step, dist=run.dist,
                                       model=run.model, optimizer=run.optimizer, state=state,
                                       tokenizer=run.tokenizer)
    else:
        path = save_checkpoint(run.run_dir, run.counters.step, model=run.model,
                               optimizer=run.optimizer, state=state, tokenizer=run.tokenizer)
    run.sink.log_event("checkpoint", f"saved {path.name}", {"step": run.counters.step,
                                                            "path": str(path)})
    on_checkpoint(run.counters.step, path)


def _pending_state(run: Run, stopping: bool) -> dict[str, Any] | None:
    """The prefetched batch for the checkpoint (async_rollouts): waited for, so a resume is exact;
    at a stop, an unfinished one is cancelled instead and the sampler rewound to before it."""
    pending = run.pending
    if pending is None:
        return None
    try:
        if stopping and not pending.future.done():
            pending.cancel()
            raise Interrupted
        with StopWatch(run.stop_check, name="generation-stop-watch") as watch:
            pending.wait(watch.fired)
    except Interrupted:
        run.sampler.load_state_dict(pending.sampler_state)
        run.pending = None
        return None
    return pending.to_state()


def _restore(run: Run, path: Path) -> None:
    if (path / "dcp").is_dir():  # written by a multi-process run: any number of processes
        state = load_sharded_checkpoint(path, dist=run.dist, model=run.model,
                                        optimizer=run.optimizer)
    elif run.dist.enabled:
        raise ConfigError(f"num_processes: {path} was written by a single-process run; resume it "
                          f"with num_processes 1")
    else:
        state = load_checkpoint(path, model=run.model, optimizer=run.optimizer)
    run.counters = Counters(**state["counters"])
    run.sampler.load_state_dict(state["sampler"])
    pending = state.get("async")
    if pending is not None and run.prefetch is not None:
        run.pending = Prefetch.from_state(pending)
    elif pending is not None:  # written by an async run, resumed synchronously: redraw that batch
        run.sampler.load_state_dict(pending["sampler_state"])
    run.estimator.load_state_dict(state["estimator"])
    if run.probe is not None and state.get("probe") is not None:
        run.probe.load_state_dict(state["probe"])
