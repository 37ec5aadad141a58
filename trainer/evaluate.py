"""Evaluation: sample k completions of each prompt, score them with a reward, summarise.

One code path for both evaluations the platform runs: an evaluation job (`POST /v1/evals`,
`evaluate(config, sink)`) and a training run's held-out eval (`trainer.loop._evaluate`, greedy,
k = 1), which calls `sample`, `score` and `summarize` here, so the two report the same numbers for
the same model, prompts and sampling.

Choices:
- `accuracy` is the fraction of all samples whose reward is >= 1 (an unscorable sample counts as
  wrong), the held-out accuracy the loop always logged; `mean_reward` is the mean reward over all
  samples with unscorable ones counted as 0 (partial-credit rewards), and `unscorable_frac` says how
  many were unscorable, so neither figure hides them.
- pass@k is the unbiased estimator of Chen et al. 2021 (arXiv:2107.03374, eq. 1): with n samples of
  a prompt of which c are correct, pass@k = 1 - C(n-c, k) / C(n, k), averaged over prompts; the
  naive 1 - (1 - c/n)^k is biased low. Reported for k = 1, the powers of two below n, and n.
- An evaluation job generates `batch_rows` rows at a time; each batch is one step of the sink
  (metrics over every row so far, and every sample of the batch), so the platform shows progress,
  an ETA and the samples as they come; a stop request ends it between batches, or within a
  batch while it is generated or scored (that batch is then left out). Batch b
  samples with the seed derived from (seed, b), so a rerun draws the same completions.
- No torch at import: `evaluate` loads the model when it runs (trainer/modeling.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import comb
from typing import TYPE_CHECKING

import numpy as np

from trainer.config import EvalConfig
from trainer.data import load_jsonl
from trainer.inspection import MAX_SAMPLE_CHARS
from trainer.interrupt import Interrupted, StopWatch
from trainer.rewards import RewardRunner
from trainer.rollout import EngineConfig, Rollout, RolloutEngine, SamplingParams, get_engine
from trainer.sinks import MetricsSink, Sample

if TYPE_CHECKING:
    from trainer.modeling import Prompts

__all__ = ["EvalResult", "EvalSummary", "evaluate", "pass_at_k", "pass_ks", "sample", "score",
           "summarize"]

ScoreFn = Callable[[Sequence[str], Sequence[str]], list[float | None]]
_EVAL = 3  # purpose of the derived sampling seeds (trainer/loop.py uses 0-2)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt with `c` correct among `n` samples: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)  # exact integers, one correctly rounded division


def pass_ks(n: int) -> list[int]:
    """The k reported for n samples per prompt: 1, the powers of two below n, and n."""
    return sorted({1, n, *(2**i for i in range(1, n.bit_length()) if 2**i < n)})


@dataclass(frozen=True)
class EvalSummary:
    """What an evaluation measured over `rows` prompts x `samples_per_prompt` samples."""

    rows: int
    samples_per_prompt: int
    accuracy: float  # fraction of samples with reward >= 1; unscorable = wrong
    mean_reward: float  # unscorable = 0
    pass_at_k: dict[int, float]
    mean_response_tokens: float
    unscorable_frac: float

    def metrics(self) -> dict[str, float]:
        """The summary as the metric names an evaluation job logs (`eval/...`)."""
        return {"eval/accuracy": self.accuracy, "eval/mean_reward": self.mean_reward,
                **{f"eval/pass@{k}": v for k, v in self.pass_at_k.items()},
                "eval/response_tokens_mean": self.mean_response_tokens,
                "eval/unscorable_frac": self.unscorable_frac, "eval/rows": float(self.rows),
                "eval/samples_per_prompt": float(self.samples_per_prompt)}


def sample(engine: RolloutEngine, prompts: list[list[int]], k: int, params: SamplingParams,
           stop: threading.Event | None = None) -> list[Rollout]:
    """k rollouts of each prompt, prompt-major (len(prompts) * k); `GenerationInterrupted` once
    `stop` is set."""
    return engine.generate(prompts, k, params, stop=stop)


def score(score_fn: ScoreFn, rollouts: Sequence[Rollout], answers: Sequence[str]) -> np.ndarray:
    """(len(rollouts),) rewards of the rollouts against their answers; NaN = unscorable."""
    scores = score_fn([r.text for r in rollouts], list(answers))
    return np.array([np.nan if s is None else s for s in scores], dtype=np.float64)


def summarize(rewards: np.ndarray, lengths: np.ndarray | None = None) -> EvalSummary:
    """The summary of rewards (P, k) (NaN = unscorable) and response lengths in tokens (P, k)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be (prompts, samples), got shape {rewards.shape}")
    rows, k = rewards.shape
    if rewards.size == 0:
        nan = float("nan")
        return EvalSummary(rows, k, nan, nan, {}, nan, nan)
    correct = np.nan_to_num(rewards, nan=0.0) >= 1.0  # (P, k)
    per_row = correct.sum(axis=1)  # (P,) c of each prompt
    return EvalSummary(
        rows=rows, samples_per_prompt=k,
        accuracy=float(np.mean(correct)),
        mean_reward=float(np.mean(np.nan_to_num(rewards, nan=0.0))),
        pass_at_k={j: float(np.mean([pass_at_k(k, int(c), j) for c in per_row])) for j in pass_ks(k)},
        mean_response_tokens=float(np.mean(lengths)) if lengths is not None else float("nan"),
        unscorable_frac=float(np.mean(np.isnan(rewards))),
    )


@dataclass
class EvalResult:
    summary: EvalSummary
    stopped: bool  # a stop request ended it before every row was evaluated
    seconds: float


def _seed(seed: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, batch, _EVAL]).generate_state(1, np.uint64)[0] >> 1)


def _samples(start: int, prompts: Prompts, rows: range, rollouts: list[Rollout], rewards: np.ndarray,
             k: int, decode: Callable[[list[int]], str]) -> list[Sample]:
    """Every sample of one batch; `index` = row * k + sample (rows counted from the dataset's start)."""
    out = []
    for j, (r, reward) in enumerate(zip(rollouts, rewards, strict=True)):
        row = rows[r.prompt_index]
        out.append(Sample(index=start + j, prompt_id=prompts.ids[row],
                          prompt=decode(prompts.tokens[row])[:MAX_SAMPLE_CHARS],
                          completion=r.text[:MAX_SAMPLE_CHARS],
                          answer=prompts.answers[row][:MAX_SAMPLE_CHARS],
                          reward=None if np.isnan(reward) else float(reward), advantage=0.0,
                          baseline=None, finish_reason=r.finish_reason))
    return out


def evaluate(config: EvalConfig, sink: MetricsSink, *, should_stop: Callable[[], bool] = lambda: False,
             on_status: Callable[[str], None] = lambda s: None) -> EvalResult:
    """Evaluate `config.model` on the first `max_rows` rows of `config.dataset`.

    Logs one sink step per batch of `batch_rows` rows (metrics over every row so far, the batch's
    samples) and returns the summary; `should_stop()` is asked before each batch and while one is
    generated or scored, and a stop ends the evaluation with the rows done so far (`stopped`)."""
    import torch

    from trainer.modeling import load_for_inference, resolve_device, tokenize

    config.check_paths()
    rows = load_jsonl(config.dataset)[: config.max_rows]  # bad data fails before the model loads
    device, autocast_dtype = resolve_device(config)
    if config.cpu_threads is not None:  # process-wide: an evaluation owns its process
        torch.set_num_threads(config.cpu_threads)
    model, tokenizer = load_for_inference(config.model, device, config.base_model)
    engine = get_engine(config.engine, model, tokenizer, EngineConfig(
        model=config.model, engine_options=config.engine_options, seed=config.seed,
        autocast_dtype=autocast_dtype))
    prompts = tokenize(rows, tokenizer)
    k, size, started = config.samples_per_prompt, config.batch_rows, time.perf_counter()
    rewards, lengths = np.zeros((0, k)), np.zeros((0, k))
    stopped = False
    on_status("running")
    try:
        with RewardRunner(config.reward, config.reward_options, workers=config.reward_workers,
                          timeout_s=config.reward_timeout, should_stop=should_stop) as rewarder:
            for batch, first in enumerate(range(0, len(rows), size)):
                if should_stop():
                    stopped = True
                    break
                block = range(first, min(first + size, len(rows)))
                params = SamplingParams(temperature=config.temperature, top_p=config.top_p,
                                        top_k=config.top_k, max_new_tokens=config.max_new_tokens,
                                        seed=_seed(config.seed, batch))
                with StopWatch(should_stop, name="eval-stop-watch") as watch:
                    rollouts = sample(engine, [prompts.tokens[i] for i in block], k, params,
                                      stop=watch.fired)
                got = score(rewarder.score, rollouts, [prompts.answers[block[r.prompt_index]]
                                                      for r in rollouts])
                rewards = np.vstack([rewards, got.reshape(len(block), k)])
                lengths = np.vstack([lengths, np.array([len(r.response_ids) for r in rollouts],
                                                       dtype=np.float64).reshape(len(block), k)])
                metrics = {**summarize(rewards, lengths).metrics(),
                           "time/elapsed": time.perf_counter() - started}
                sink.log_step(batch + 1, metrics, {}, _samples(
                    first * k, prompts, block, rollouts, got, k,
                    lambda ids: tokenizer.decode(ids, skip_special_tokens=True)))
    except Interrupted:  # a stop while a batch was generated or scored: that batch is left out
        stopped = True
    finally:
        engine.close()
    return EvalResult(summarize(rewards, lengths), stopped, time.perf_counter() - started)
