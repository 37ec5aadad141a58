"""Metrics sinks: where a run's per-step metrics, histograms and events go.

The loop talks only to the `MetricsSink` protocol; a no-op `NullSink` has the real methods, so the
loop never asks "is there a logger?". The database sink lives in worker/ (it needs core/).

Choices:
- `JsonlSink` writes one JSON object per line and flushes each one: a killed run loses at most
  the line being written, and `tail -f` works. Steps: `{"type": "step", "step", "metrics",
  "histograms"}`; events: `{"type": "event", "kind", "message", "data", "time"}`.
- `ConsoleSink` shows a tqdm bar over `max_steps` (only on a terminal: redrawn bars would flood a
  log file) plus a compact line every `every` steps and on eval steps (reward, accuracy, eval,
  loss, BASIS value-MSE, seconds); output goes to stderr so `--json` keeps stdout clean.
- `log_step` also takes the step's `samples` (a few rollouts with prompt, completion, reward and
  advantage; trainer/inspection.py picks them): JSONL writes them in the step's line, the console
  prints one on eval steps, the database sink stores them in the step's transaction.
- `progress_line` is the one wording of a step's progress (step/max, reward, accuracy, eval, ETA
  from the wall-clock so far), shared by the console and the job's log (worker/sink.py).
- The advantage histogram has fixed edges (-1..1, 20 bins) so the dashboard can stack steps;
  values outside are folded into the end bins (docs/architecture.md).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable

import numpy as np

__all__ = [
    "ConsoleSink",
    "Histogram",
    "JsonlSink",
    "MetricsSink",
    "MultiSink",
    "NullSink",
    "Sample",
    "advantage_histogram",
    "format_seconds",
    "StepRate",
    "progress_line",
    "read_jsonl_metrics",
]

ADV_EDGES = tuple(np.linspace(-1.0, 1.0, 21).round(6).tolist())


@dataclass
class Histogram:
    edges: list[float]  # (bins + 1,)
    counts: list[int]  # (bins,)


@dataclass
class Sample:
    """One rollout of a step, kept for reading: what the model saw, wrote and was scored."""

    index: int  # position in the step's prompt-major batch
    prompt_id: str
    prompt: str
    completion: str
    answer: str  # the dataset's expected answer
    reward: float | None  # None = unscorable
    advantage: float
    baseline: float | None
    finish_reason: str  # "stop" | "length"


def format_seconds(seconds: float) -> str:
    """`75.2` -> "1m15s", `3700` -> "1h01m", `9.4` -> "9s"."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


_PROGRESS_KEYS = (("reward/mean", "reward"), ("reward/accuracy", "acc"),
                  ("reward/unscorable_frac", "unscorable"), ("eval/accuracy", "eval"))


class PhaseProgress:
    """`progress(done, total)` of a long phase as lines: "<what> 2880/28800 (10%), elapsed 12s,
    eta 1m48s" (`detail`, e.g. ", loss 1.2", goes after the percentage). Reports at each `every` fraction crossed (and at the end), but only once
    `min_seconds` have passed since the phase began, so a phase that ends quickly says nothing
    extra. `emit(message, data)` receives each line with {"done", "total", "progress"}."""

    def __init__(self, what: str, emit: Any, *, every: float = 0.1, min_seconds: float = 2.0,
                 eta: str = "eta", clock: Any = time.monotonic):
        self.what, self.emit, self.every, self.min_seconds, self.clock = (
            what, emit, every, min_seconds, clock)
        self.eta = eta  # "at most" where the phase may stop early (the demo model's warm start)
        self.start = clock()
        self.reported = 0.0  # the fraction reported last

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        if total <= 0:
            return
        fraction = min(1.0, done / total)
        elapsed = self.clock() - self.start
        due = fraction >= 1.0 or fraction >= self.reported + self.every
        if not due or elapsed < self.min_seconds or fraction <= self.reported:
            return
        self.reported = fraction
        line = f"{self.what} {done}/{total} ({fraction:.0%}){detail}, elapsed {format_seconds(elapsed)}"
        if 0 < fraction < 1.0:
            line += f", {self.eta} {format_seconds(elapsed / fraction * (1 - fraction))}"
        self.emit(line, {"done": done, "total": total, "progress": round(fraction, 4)})


class StepRate:
    """Wall seconds per step, an exponential moving average over the steps seen (from the
    cumulative `time/elapsed`), so an ETA follows the current pace rather than the run's average,
    which counts the offline priors phase and the initial eval as if they were steps."""

    def __init__(self, weight: float = 0.1):
        self.weight = weight
        self.last: tuple[int, float] | None = None
        self.seconds_per_step: float | None = None

    def update(self, step: int, metrics: Mapping[str, float | None]) -> float | None:
        elapsed = metrics.get("time/elapsed")
        if elapsed is None or step <= 0:
            return self.seconds_per_step
        if self.last is not None and step > self.last[0] and elapsed >= self.last[1]:
            pace = (float(elapsed) - self.last[1]) / (step - self.last[0])
            old = self.seconds_per_step
            self.seconds_per_step = pace if old is None else old + self.weight * (pace - old)
        self.last = (step, float(elapsed))
        return self.seconds_per_step


def progress_line(step: int, max_steps: int | None, metrics: Mapping[str, float | None],
                  seconds_per_step: float | None = None) -> str:
    """"step 12/100 reward=0.41 acc=0.38 eval=0.5 elapsed 1m02s eta 7m34s" (absent keys left
    out); the ETA is `seconds_per_step` (StepRate) times the steps left, else the average so far."""
    parts = [f"step {step}/{max_steps}" if max_steps else f"step {step}"]
    for key, label in _PROGRESS_KEYS:
        value = metrics.get(key)
        if value is not None and math.isfinite(float(value)):
            if key == "reward/unscorable_frac" and not value:
                continue
            parts.append(f"{label}={float(value):.3g}")
    elapsed = metrics.get("time/elapsed")
    if elapsed is not None and step > 0:
        parts.append(f"elapsed {format_seconds(float(elapsed))}")
        if max_steps and max_steps > step:
            pace = seconds_per_step if seconds_per_step is not None else float(elapsed) / step
            parts.append(f"eta {format_seconds(pace * (max_steps - step))}")
    return " ".join(parts)


def advantage_histogram(values: np.ndarray, edges: tuple[float, ...] = ADV_EDGES) -> Histogram:
    """Histogram of (n,) advantages on fixed edges; out-of-range values land in the end bins."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    e = np.asarray(edges, dtype=np.float64)
    counts, _ = np.histogram(np.clip(v, e[0], e[-1]), bins=e)
    return Histogram(edges=list(map(float, e)), counts=[int(c) for c in counts])


@runtime_checkable
class MetricsSink(Protocol):
    def log_step(
        self, step: int, metrics: Mapping[str, float], histograms: Mapping[str, Histogram],
        samples: Sequence[Sample] = (),
    ) -> None: ...

    def log_event(self, kind: str, message: str, data: Mapping[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Discards everything."""

    def log_step(self, step, metrics, histograms, samples=()) -> None:
        pass

    def log_event(self, kind, message, data=None) -> None:
        pass

    def close(self) -> None:
        pass


def _clean(value: float) -> float | None:
    """JSON has no NaN/inf: write them as null."""
    value = float(value)
    return value if math.isfinite(value) else None


class JsonlSink:
    """Appends one JSON line per step / event to `path` (parents created)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def _write(self, obj: dict[str, Any]) -> None:
        self._f.write(json.dumps(obj, sort_keys=True) + "\n")
        self._f.flush()

    def log_step(self, step, metrics, histograms, samples=()) -> None:
        self._write(
            {
                "type": "step",
                "step": int(step),
                "metrics": {k: _clean(v) for k, v in metrics.items()},
                "histograms": {k: asdict(h) for k, h in histograms.items()},
                "samples": [asdict(x) for x in samples],
            }
        )

    def log_event(self, kind, message, data=None) -> None:
        self._write(
            {"type": "event", "kind": kind, "message": message, "data": dict(data or {}),
             "time": time.time()}
        )

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_jsonl_metrics(path: str | Path) -> dict[int, dict[str, float | None]]:
    """step -> metrics from a JsonlSink file (later lines for the same step update earlier ones)."""
    out: dict[int, dict[str, float | None]] = {}
    for line in Path(path).read_text().splitlines():
        obj = json.loads(line)
        if obj.get("type") == "step":
            out.setdefault(obj["step"], {}).update(obj["metrics"])
    return out


class ConsoleSink:
    """tqdm progress bar over `max_steps` and a compact summary line every `every` steps."""

    KEYS = (
        ("reward/mean", "reward"),
        ("reward/accuracy", "acc"),
        ("eval/accuracy", "eval"),
        ("loss/policy", "loss"),
        ("value_mse/basis", "vmse_basis"),
        ("time/step", "s/step"),
    )

    def __init__(self, max_steps: int, every: int = 1, stream: TextIO | None = None):
        from tqdm import tqdm

        self.max_steps = max_steps
        self.rate = StepRate()
        self.stream = stream or sys.stderr
        self.every = max(1, every)
        # disable=None: no bar when the stream is not a terminal (logs, CI); lines still print.
        self.bar = tqdm(total=max_steps, file=self.stream, dynamic_ncols=True, leave=True,
                        desc="train", disable=None)

    def _line(self, step: int, metrics: Mapping[str, float]) -> str:
        parts = [f"step {step}"]
        for key, label in self.KEYS:
            if key in metrics and metrics[key] is not None:
                parts.append(f"{label}={float(metrics[key]):.4g}")
        return " ".join(parts)

    def log_step(self, step, metrics, histograms, samples=()) -> None:
        if step > self.bar.n:
            self.bar.update(step - self.bar.n)
        if step == 0 or step % self.every == 0 or "eval/accuracy" in metrics:
            line = self._line(step, metrics)
            pace = self.rate.update(step, metrics)
            _, found, timing = progress_line(step, self.max_steps, metrics, pace).partition(" elapsed ")
            self.bar.write(f"{line} elapsed {timing}" if found else line, file=self.stream)
        if samples and "eval/accuracy" in metrics:
            x = samples[0]
            reward = "unscorable" if x.reward is None else f"{x.reward:.3g}"
            self.bar.write(f"  sample: {x.prompt[-60:]!r} -> {x.completion[:80]!r} "
                           f"(answer {x.answer[:20]!r}, reward {reward}, adv {x.advantage:+.3g})",
                           file=self.stream)

    def log_event(self, kind, message, data=None) -> None:
        self.bar.write(f"[{kind}] {message}", file=self.stream)

    def close(self) -> None:
        self.bar.close()


class MultiSink:
    """Fans every call out to each sink, in order."""

    def __init__(self, *sinks: MetricsSink):
        self.sinks = sinks

    def log_step(self, step, metrics, histograms, samples=()) -> None:
        for s in self.sinks:
            s.log_step(step, metrics, histograms, samples)

    def log_event(self, kind, message, data=None) -> None:
        for s in self.sinks:
            s.log_event(kind, message, data)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
