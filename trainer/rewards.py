"""Verifiable rewards: a registry of scorers and a process pool that runs them with timeouts.

Every reward has one signature, ``fn(completions, answers, **options) -> list[float | None]``,
values in [0, 1], where ``None`` means *unscorable*: left out of every baseline, advantage 0
(DESIGN.md section 3). Choices:
- Options are a pydantic model per reward (extra keys forbidden), validated when the reward is called
  and, earlier, by `validate_reward_options` so a bad config fails before any training. Errors are
  `RewardOptionsError` (a ValueError) naming the reward and the option.
- "Cannot parse" is unscorable, not wrong (issue 3): a gold answer that does not parse is always
  None; a completion with no extractable answer (no number for `numeric`, no regex match, no choice
  letter, nothing math-verify can read) scores `unparsed`, an option on those rewards that defaults
  to None. Set ``unparsed=0.0`` to punish answer-less completions instead.
- `RewardRunner` scores each item in a worker process's *main thread* (math-verify's timeouts use
  SIGALRM, which only works there), one item at a time per worker, with a hard per-item deadline
  enforced by the parent: an item that runs past it, kills its worker or raises is None, never 0,
  and a lost worker is replaced. But when *every* item of a batch raised, the reward itself is
  broken: `score` raises `RewardError` with the first exception, so the job fails visibly instead
  of training on nothing. Workers come from a `forkserver` context (preloaded with this module, so a
  replacement starts in milliseconds, and fork-safe next to torch threads); `spawn` where
  forkserver does not exist. `workers=0` scores in-process (tests, tiny runs), one item at a time
  under the same per-item deadline: a SIGALRM timer ticking every 0.25 s interrupts the item when it
  runs past it (CPython's `re` engine checks signals, so a catastrophic pattern is interrupted too).
  That needs the main thread; elsewhere in-process scoring has no deadline and says so in a warning.
  (math-verify arms its own SIGALRM timeout and cancels ours when it returns; its own bounds it.)
- `should_stop` (the trainer's cancel check) is polled every 0.5 s by a thread while a batch is
  scored, and a stop interrupts the batch within a tick (`ScoringInterrupted`): a cancel never waits
  for a slow or hostile reward to finish a batch (issue 18).
- Regex patterns are checked when the options are validated (job creation): length-capped, compiled
  (a 50,000-deep nesting is an error, not a RecursionError), and probed with the `regex` engine's
  timeout on short texts, so a catastrophically backtracking pattern such as `(.|.)*\\Z\\A` is
  refused before it reaches a worker.
- Rewards registered outside this module must live in an importable module that the workers import
  by name (`RewardRunner(..., modules=[...])`), since workers do not share the parent's memory.
  Like any multiprocessing start method but fork, workers re-import the main module: a script
  needs the `if __name__ == "__main__":` guard, and one read from stdin cannot use workers.
"""

from __future__ import annotations

import importlib
import math
import multiprocessing as mp
import multiprocessing.connection
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainer.interrupt import ScoringInterrupted as ScoringInterrupted  # re-exported
from trainer.interrupt import StopWatch
from trainer.registry import NoOptions, Registry

RewardFn = Callable[..., list[float | None]]


class RewardOptionsError(ValueError):
    """Bad options for a reward; the message names the reward and the option."""


@dataclass(frozen=True)
class RewardSpec:
    name: str
    fn: RewardFn            # the raw scorer, called with validated options
    options: type[BaseModel]

    def __str__(self) -> str:  # names the scorer in the registry's "already registered" error
        return f"{self.fn.__module__}.{self.fn.__qualname__}"


REWARDS: Registry[RewardSpec] = Registry("reward")


def register_reward(name: str, *, options: type[BaseModel] = NoOptions):
    """Function decorator adding a reward under `name`; a name already taken raises ValueError."""

    def decorate(fn: RewardFn) -> RewardFn:
        REWARDS.add(name, RewardSpec(name, fn, options))
        return fn

    return decorate


def validate_reward_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """All options of reward `name` with defaults filled in; raises RewardOptionsError naming the
    bad option, or ValueError listing valid rewards for an unknown name."""
    spec = REWARDS.lookup(name)
    try:
        return spec.options(**dict(options or {})).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"option '{'.'.join(map(str, e['loc'])) or '?'}': {e['msg']}" for e in exc.errors())
        raise RewardOptionsError(f"reward {name!r}: {problems}") from None


def get_reward(name: str) -> RewardFn:
    """The reward `name` as ``fn(completions, answers, **options) -> list[float | None]``
    (options validated on each call). Unknown name -> ValueError listing the valid ones."""
    spec = REWARDS.lookup(name)

    def reward(completions: Sequence[str], answers: Sequence[str], **options: Any):
        if len(completions) != len(answers):
            raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
        return spec.fn(list(completions), list(answers), **validate_reward_options(name, options))

    reward.__name__ = reward.__qualname__ = f"reward_{name}"
    reward.__doc__ = spec.fn.__doc__
    return reward


# ----------------------------------------------------------------------------- helpers

_WS = re.compile(r"\s+")


def _normalise(text: str, case_sensitive: bool) -> str:
    text = _WS.sub(" ", text).strip()
    return text if case_sensitive else text.casefold()


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")


def extract_numbers(text: str) -> list[float]:
    """Every decimal number in `text`, in order ("1,234.5" -> 1234.5; "-3e2" -> -300.0)."""
    values = []
    for match in _NUMBER.finditer(text):
        token = match.group(0)
        if not any(c.isdigit() for c in token):
            continue
        try:
            values.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return values


def _parse_gold_number(answer: str) -> float | None:
    text = answer.strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        pass
    fraction = re.fullmatch(r"([-+]?\d+)\s*/\s*(\d+)", text)
    if fraction and int(fraction.group(2)) != 0:
        return int(fraction.group(1)) / int(fraction.group(2))
    numbers = extract_numbers(text)
    return numbers[0] if len(numbers) == 1 else None


class _Unparsed(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unparsed: float | None = Field(None, ge=0.0, le=1.0, description=(
        "score for a completion with no extractable answer; None = unscorable"))


# ----------------------------------------------------------------------------- built-ins


class ExactOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_sensitive: bool = Field(True, description="compare letters' case too")


@register_reward("exact", options=ExactOptions)
def exact_reward(completions: list[str], answers: list[str], *, case_sensitive: bool
                 ) -> list[float | None]:
    """1.0 if the completion equals the answer after collapsing whitespace (and case, if asked)."""
    return [float(_normalise(c, case_sensitive) == _normalise(a, case_sensitive))
            for c, a in zip(completions, answers, strict=True)]


class NumericOptions(_Unparsed):
    position: Literal["first", "last"] = Field("last", description="which number of the completion")
    rel_tol: float = Field(1e-6, ge=0.0, description="relative tolerance (math.isclose)")
    abs_tol: float = Field(1e-9, ge=0.0, description="absolute tolerance (math.isclose)")


@register_reward("numeric", options=NumericOptions)
def numeric_reward(completions: list[str], answers: list[str], *, position: str, rel_tol: float,
                   abs_tol: float, unparsed: float | None) -> list[float | None]:
    """1.0 if the first/last number in the completion is within tolerance of the numeric answer.
    Answer not a number -> None; completion without a number -> `unparsed`."""
    scores: list[float | None] = []
    for completion, answer in zip(completions, answers, strict=True):
        gold = _parse_gold_number(answer)
        numbers = extract_numbers(completion)
        if gold is None:
            scores.append(None)
        elif not numbers:
            scores.append(unparsed)
        else:
            got = numbers[0] if position == "first" else numbers[-1]
            scores.append(float(math.isclose(got, gold, rel_tol=rel_tol, abs_tol=abs_tol)))
    return scores


MAX_PATTERN_CHARS = 1000
# Texts a pattern is tried on at validation: a backtracking blow-up shows on one of them within
# PROBE_TIMEOUT_S (`(.|.)*\\Z\\A` needs ~0.6 s on 20 characters, years on 64).
_PROBE_TEXTS = ("x" * 64, "a1 " * 22, "\n" * 64, "Answer: " + "9" * 56, "(" * 32 + ")" * 32)
PROBE_TIMEOUT_S = 0.05


def _check_backtracking(pattern: str, flags: int) -> None:
    """Raise ValueError when `pattern` takes more than PROBE_TIMEOUT_S on a short probe text."""
    import regex  # the `regex` engine takes a timeout; `re` cannot be bounded off the main thread

    try:
        compiled = regex.compile(pattern, flags=flags)
    except Exception:  # noqa: BLE001 - `re` accepted it; a dialect difference is no verdict
        return
    for text in _PROBE_TEXTS:
        try:
            compiled.search(text, timeout=PROBE_TIMEOUT_S)
        except TimeoutError:
            raise ValueError(
                f"pattern takes over {PROBE_TIMEOUT_S * 1000:.0f} ms on a {len(text)}-character text "
                "(catastrophic backtracking, e.g. a repeated alternation of overlapping branches "
                "such as (.|.)*); simplify it") from None


class RegexOptions(_Unparsed):
    pattern: str = Field(..., max_length=MAX_PATTERN_CHARS,
                         description="regular expression with at least one capture group")
    group: int | str = Field(1, description="capture group holding the answer (number or name)")
    position: Literal["first", "last"] = Field("last", description="which match of the completion")
    case_sensitive: bool = True
    dotall: bool = Field(False, description="let '.' match newlines")

    @model_validator(mode="after")
    def _check_pattern(self) -> RegexOptions:
        flags = (0 if self.case_sensitive else re.IGNORECASE) | (re.DOTALL if self.dotall else 0)
        try:
            compiled = re.compile(self.pattern, flags)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from None
        except (RecursionError, OverflowError, MemoryError):
            raise ValueError("pattern is nested too deeply or too large to compile") from None
        if compiled.groups < 1:
            raise ValueError("pattern needs a capture group, e.g. 'Answer: (\\S+)'")
        if isinstance(self.group, int) and not 0 <= self.group <= compiled.groups:
            raise ValueError(f"group {self.group} does not exist (pattern has {compiled.groups})")
        if isinstance(self.group, str) and self.group not in compiled.groupindex:
            raise ValueError(f"group {self.group!r} is not a named group of the pattern")
        _check_backtracking(self.pattern, flags)
        return self


@register_reward("regex", options=RegexOptions)
def regex_reward(completions: list[str], answers: list[str], *, pattern: str, group: int | str,
                 position: str, case_sensitive: bool, dotall: bool, unparsed: float | None
                 ) -> list[float | None]:
    """1.0 if the captured group (first/last match) equals the answer, whitespace-normalised.
    No match -> `unparsed` (default None: unscorable)."""
    flags = (0 if case_sensitive else re.IGNORECASE) | (re.DOTALL if dotall else 0)
    compiled = re.compile(pattern, flags)
    scores: list[float | None] = []
    for completion, answer in zip(completions, answers, strict=True):
        matches = list(compiled.finditer(completion))
        if not matches:
            scores.append(unparsed)
            continue
        got = (matches[0] if position == "first" else matches[-1]).group(group) or ""
        scores.append(float(_normalise(got, case_sensitive) == _normalise(answer, case_sensitive)))
    return scores


class ChoiceOptions(_Unparsed):
    letters: str = Field("ABCDE", min_length=2, pattern=r"^[A-Z]+$",
                         description="valid choice letters, upper case")


def _choice_patterns(letters: str) -> list[re.Pattern]:
    cls = f"[{letters}{letters.lower()}]"
    return [  # most explicit first; the last match of the first pattern that matches wins
        re.compile(rf"^\s*\(?({cls})\)?[.:]?\s*$"),  # the whole completion is one letter
        re.compile(rf"\\boxed\{{\s*\(?({cls})\)?\s*\}}"),
        re.compile(rf"(?i:answer)\s*(?:is|:)?\s*[:\s]*\(?({cls})\)?(?![A-Za-z])"),
        re.compile(rf"\(({cls})\)"),
        re.compile(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])"),  # upper case only: 'a' is a word
    ]


def extract_choice(text: str, letters: str = "ABCDE") -> str | None:
    """The chosen letter in `text` (upper case) or None: a bare letter, \\boxed{B},
    "answer is (B)", "(B)", then the last standalone capital letter among `letters`."""
    for pattern in _choice_patterns(letters):
        found = pattern.findall(text)
        if found:
            return found[-1].upper()
    return None


@register_reward("choice", options=ChoiceOptions)
def choice_reward(completions: list[str], answers: list[str], *, letters: str,
                  unparsed: float | None) -> list[float | None]:
    """1.0 if the letter chosen in the completion is the answer's letter ("B", "(B)", "b.").
    Answer not a valid letter -> None; no letter found -> `unparsed`."""
    scores: list[float | None] = []
    for completion, answer in zip(completions, answers, strict=True):
        gold = re.fullmatch(rf"\s*\(?([{letters}{letters.lower()}])\)?[.:]?\s*", answer)
        got = extract_choice(completion, letters)
        if gold is None:
            scores.append(None)
        elif got is None:
            scores.append(unparsed)
        else:
            scores.append(float(got == gold.group(1).upper()))
    return scores


class MathOptions(_Unparsed):
    timeout_s: int = Field(5, ge=1, le=600, description="math-verify's own parse/verify timeout")
    float_rounding: int = Field(6, ge=0, le=15)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@register_reward("math", options=MathOptions)
def math_reward(completions: list[str], answers: list[str], *, timeout_s: int,
                float_rounding: int, unparsed: float | None) -> list[float | None]:
    """math-verify: parse gold and completion (LaTeX, \\boxed, plain expressions), then verify.
    Gold that does not parse -> None; completion that does not parse -> `unparsed`."""
    from math_verify import parse, verify

    # SIGALRM timeouts exist only on a main thread; elsewhere rely on RewardRunner's deadline.
    timeout = timeout_s if _on_main_thread() else None
    scores: list[float | None] = []
    for completion, answer in zip(completions, answers, strict=True):
        gold = parse(answer, parsing_timeout=timeout) or parse(f"${answer}$", parsing_timeout=timeout)
        if not gold:
            scores.append(None)
            continue
        pred = parse(completion, parsing_timeout=timeout)
        if not pred:
            scores.append(unparsed)
            continue
        scores.append(float(verify(gold, pred, float_rounding=float_rounding,
                                   timeout_seconds=timeout)))
    return scores


# ----------------------------------------------------------------------------- runner


def _worker_main(conn, modules: Sequence[str]) -> None:
    """Worker loop: receive (name, options, completion, answer), send back ("ok", score) or
    ("raised", "ExceptionType: message")."""
    try:
        for module in modules:
            importlib.import_module(module)
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        name, options, completion, answer = message
        reply: tuple[str, float | str | None]
        try:
            reply = ("ok", REWARDS[name].fn([completion], [answer], **options)[0])
        except Exception as exc:  # unscorable item; the parent decides if the reward is broken
            reply = ("raised", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


def _mp_context():
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:
        return mp.get_context("spawn")
    ctx.set_forkserver_preload([__name__, "math_verify"])
    return ctx


STARTUP_TIMEOUT_S = 120.0


class RewardError(RuntimeError):
    """The reward itself is broken: it raised on every item of a batch."""


class _ItemTimeout(BaseException):
    """An in-process item ran past its deadline (raised from the SIGALRM tick)."""


TICK_S = 0.25          # in-process deadline / stop resolution
class _Deadline:
    """Interrupt the main thread's current item at `deadline` or when `watch` fires: a SIGALRM
    every TICK_S whose handler raises. Inactive (a no-op) off the main thread."""

    def __init__(self, watch: StopWatch):
        self.watch, self.deadline = watch, math.inf
        self.active = _on_main_thread()
        self._previous: Any = None

    def _tick(self, _signum, _frame) -> None:
        self.watch.check()
        if time.monotonic() >= self.deadline:
            raise _ItemTimeout

    def __enter__(self) -> _Deadline:
        if self.active:
            self._previous = signal.signal(signal.SIGALRM, self._tick)
        return self

    def arm(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        if self.active:  # re-armed per item: math-verify's own alarm cancels the timer
            signal.setitimer(signal.ITIMER_REAL, TICK_S, TICK_S)

    def __exit__(self, *_exc) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)


def _check_not_broken(name: str, items: int, raised: Sequence[str]) -> None:
    """One item raising is an odd completion (unscorable); all of them raising is a bug in the
    reward, which must fail the run loudly rather than train on nothing."""
    if items and len(raised) == items:
        raise RewardError(f"reward {name!r} raised on every item of a batch of {items}; "
                          f"first error: {raised[0]}")


def _clean(score: Any) -> float | None:
    """A scorer's value as float; None and NaN both mean unscorable."""
    if score is None:
        return None
    value = float(score)
    return None if math.isnan(value) else value


class _Worker:
    def __init__(self, ctx, modules: Sequence[str]):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, list(modules)), daemon=True)
        self.process.start()
        child.close()
        self.item: int | None = None
        self.deadline = 0.0
        # Handshake: a worker that cannot even start is a setup error, not an unscorable item.
        status, detail = "died", "exited during start-up"
        if self.conn.poll(STARTUP_TIMEOUT_S):
            try:
                status, detail = self.conn.recv()
            except (EOFError, OSError):
                pass
        else:
            detail = f"not ready after {STARTUP_TIMEOUT_S:.0f} s"
        if status != "ready":
            self.kill()
            raise RuntimeError(
                f"reward worker failed to start: {detail}. Workers re-import the main module (as "
                "all multiprocessing does); a script read from stdin cannot be, so use workers=0 "
                "there")

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class RewardRunner:
    """Score batches with reward `name` in `workers` processes, `timeout_s` per item.

    `score(completions, answers) -> list[float | None]` in input order. An item past its deadline,
    whose worker dies or whose scorer raises is None (a lost worker is replaced); if every item of
    the batch raised, `score` raises RewardError instead. workers=0 scores in this process under
    the same deadline (SIGALRM; main thread only). `should_stop`, when given, is polled while a
    batch is scored and raises `ScoringInterrupted` out of `score` once it answers True.
    Use as a context manager or call close().
    """

    def __init__(self, name: str, options: Mapping[str, Any] | None = None, *, workers: int = 2,
                 timeout_s: float = 10.0, modules: Iterable[str] = (),
                 should_stop: Callable[[], bool] | None = None):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.name = name
        self.options = validate_reward_options(name, options)
        if workers and mp.current_process().daemon:
            # A daemonic process (e.g. a Celery prefork child) may not start children; score here,
            # where math-verify's own SIGALRM timeouts still apply on the main thread.
            warnings.warn("RewardRunner: this process is daemonic and cannot start reward "
                          "workers; scoring in-process (workers=0)", RuntimeWarning, stacklevel=2)
            workers = 0
        if not workers and not _on_main_thread():
            warnings.warn("RewardRunner: scoring in-process off the main thread, where no "
                          "per-item deadline can be enforced; use workers >= 1", RuntimeWarning,
                          stacklevel=2)
        self.workers = workers
        self.should_stop = should_stop
        self.timeout_s = float(timeout_s)
        self.modules = [__name__, *modules]
        self.restarts = 0  # workers replaced after a timeout or crash (a health metric)
        self.timeouts = 0
        self._pool: list[_Worker] = []
        self._ctx = _mp_context() if workers else None

    def _start(self) -> None:
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx, self.modules))

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._pool.remove(worker)
        self.restarts += 1
        self._start()

    def score(self, completions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        if len(completions) != len(answers):
            raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
        with StopWatch(self.should_stop, name="reward-stop-watch") as watch:
            if not self.workers:
                return self._score_here(list(completions), list(answers), watch)
            return self._score_in_pool(completions, answers, watch)

    def _score_in_pool(self, completions: Sequence[str], answers: Sequence[str],
                       watch: StopWatch) -> list[float | None]:
        self._start()
        results: list[float | None] = [None] * len(completions)
        raised: list[str] = []
        pending = list(range(len(completions)))[::-1]
        busy: list[_Worker] = []
        while pending or busy:
            for worker in [w for w in self._pool if w not in busy]:
                if not pending:
                    break
                i = pending.pop()
                try:
                    worker.conn.send((self.name, self.options, completions[i], answers[i]))
                except (BrokenPipeError, OSError):
                    pending.append(i)
                    self._replace(worker)
                    continue
                worker.item, worker.deadline = i, time.monotonic() + self.timeout_s
                busy.append(worker)
            if not busy:
                continue
            if watch.fired.is_set():  # the busy workers hold items of a void batch: drop them
                for worker in busy:
                    worker.kill()
                    self._pool.remove(worker)
                watch.check()
            now = time.monotonic()
            wait = min(max(0.0, min(w.deadline for w in busy) - now), TICK_S)
            ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy],
                                       timeout=wait)
            for worker in list(busy):
                if worker.conn in ready:
                    try:
                        value = worker.conn.recv()
                    except (EOFError, OSError):  # died mid-item: unscorable, replace it
                        busy.remove(worker)
                        self._replace(worker)
                        continue
                    status, value = value
                    if status == "ok":
                        assert worker.item is not None  # busy workers hold an item
                        results[worker.item] = _clean(value)
                    else:
                        raised.append(value)
                    busy.remove(worker)
                elif worker.process.sentinel in ready or time.monotonic() >= worker.deadline:
                    if worker.process.is_alive():
                        self.timeouts += 1
                    busy.remove(worker)
                    self._replace(worker)
        _check_not_broken(self.name, len(completions), raised)
        return results

    def _score_here(self, completions: list[str], answers: list[str], watch: StopWatch
                    ) -> list[float | None]:
        """In-process scoring with the pool's rules, one item at a time under its deadline: an
        item whose scorer raises or runs past `timeout_s` is None."""
        fn = REWARDS[self.name].fn
        scores: list[float | None] = []
        raised: list[str] = []
        with _Deadline(watch) as deadline:
            for completion, answer in zip(completions, answers, strict=True):
                watch.check()
                try:
                    deadline.arm(self.timeout_s)
                    try:
                        scores.append(_clean(fn([completion], [answer], **self.options)[0]))
                    finally:
                        deadline.deadline = math.inf
                except _ItemTimeout:
                    self.timeouts += 1
                    scores.append(None)
                except Exception as exc:
                    scores.append(None)
                    raised.append(f"{type(exc).__name__}: {exc}")
        _check_not_broken(self.name, len(completions), raised)
        return scores

    def close(self) -> None:
        for worker in self._pool:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._pool:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
            worker.conn.close()
        self._pool.clear()

    def __enter__(self) -> RewardRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
