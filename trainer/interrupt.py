"""Stop requests inside a step: the exceptions that cut one short and the watch that notices them.

Choices:
- The trainer's `should_stop` may be slow (the worker reads a database row), so it is never asked
  per token or per item: a daemon thread (`StopWatch`) asks it every `POLL_S` while a long phase
  runs (generation, scoring) and sets a `threading.Event`, which the phase checks as often as it
  likes (the `hf` engine between tokens, the reward runner between items). A cancel therefore
  lands within about `POLL_S` plus one token or one reward tick.
- `Interrupted` is a BaseException so that a reward's or a model's own `except Exception` cannot
  swallow it. A step it cuts short is void: the loop abandons it and writes no checkpoint for it
  (the run resumes after the last one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["POLL_S", "GenerationInterrupted", "Interrupted", "ScoringInterrupted", "StopWatch"]

POLL_S = 0.5  # how often `should_stop` is asked while a long phase runs


class Interrupted(BaseException):
    """A stop request cut a step short; the step's work is void."""


class ScoringInterrupted(Interrupted):
    """`should_stop` fired while a batch was being scored; the batch's scores are void."""


class GenerationInterrupted(Interrupted):
    """The stop flag was set while rollouts were being generated; the rollouts are void."""


class StopWatch:
    """A daemon thread asking `should_stop()` every `poll_s` while a phase runs; `fired` is set once
    it answers True (an exception in it counts as "not now"). With `should_stop=None` it is inert."""

    def __init__(self, should_stop: Callable[[], bool] | None, poll_s: float = POLL_S,
                 name: str = "stop-watch"):
        self.fired = threading.Event()
        self._should_stop, self._poll_s, self._name = should_stop, poll_s, name
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StopWatch:
        if self._should_stop is not None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        should_stop = self._should_stop
        assert should_stop is not None  # started only with one (__enter__)
        while not self._done.wait(self._poll_s):
            try:
                if should_stop():
                    self.fired.set()
                    return
            except Exception:  # noqa: BLE001 - the trainer asks again between steps
                continue

    def __exit__(self, *_exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll_s + 5)

    def check(self, exc: type[Interrupted] = ScoringInterrupted, what: str = "scoring") -> None:
        if self.fired.is_set():
            raise exc(f"stop requested while {what}")
