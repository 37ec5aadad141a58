"""Reward registry, built-in scorers, and the process-pool runner's timeout/crash handling."""

import os
import re
import time

import pytest
from pydantic import BaseModel, ConfigDict

from trainer.rewards import (
    REWARDS,
    RewardError,
    RewardOptionsError,
    RewardRunner,
    ScoringInterrupted,
    extract_choice,
    extract_numbers,
    get_reward,
    register_reward,
    validate_reward_options,
)


def test_registry_has_builtins_rejects_duplicates_and_lists_names():
    assert {"math", "exact", "numeric", "regex", "choice"} <= set(REWARDS)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("exact")(lambda c, a: [1.0] * len(c))
    # Other test modules register rewards of their own, so the list is whatever is registered now.
    with pytest.raises(ValueError, match=re.escape("valid names: " + ", ".join(sorted(REWARDS))) + "$"):
        get_reward("nope")


def test_options_are_validated_with_names():
    assert validate_reward_options("numeric")["rel_tol"] == 1e-6
    with pytest.raises(RewardOptionsError, match="reward 'numeric': option 'rel_tol'"):
        validate_reward_options("numeric", {"rel_tol": -1})
    with pytest.raises(RewardOptionsError, match="option 'tolerance'"):
        get_reward("numeric")(["1"], ["1"], tolerance=0.1)
    with pytest.raises(RewardOptionsError, match="capture group"):
        validate_reward_options("regex", {"pattern": "answer"})
    with pytest.raises(RewardOptionsError, match="does not compile"):
        validate_reward_options("regex", {"pattern": "(unclosed"})
    with pytest.raises(RewardOptionsError, match="option 'pattern'"):
        validate_reward_options("regex", {})
    with pytest.raises(RewardOptionsError, match="option 'unparsed'"):
        validate_reward_options("math", {"unparsed": 2})
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        get_reward("exact")(["a", "b"], ["a"])


def test_exact():
    exact = get_reward("exact")
    assert exact([" 19 ", "1 9", "Yes", "yes  no"], ["19", "19", "yes", "yes no"]) == [1.0, 0.0, 0.0, 1.0]
    assert exact(["Yes"], ["yes"], case_sensitive=False) == [1.0]


def test_numeric():
    numeric = get_reward("numeric")
    completions = ["19", "so x = 19.0000001", "I think 7 then 19", "no idea", "1,234", "-3", "20"]
    answers = ["19", "19", "19", "19", "1234", "-3", "19"]
    assert numeric(completions, answers) == [1.0, 1.0, 1.0, None, 1.0, 1.0, 0.0]
    assert numeric(["7 then 19"], ["19"], position="first") == [0.0]
    assert numeric(["no idea"], ["19"], unparsed=0.0) == [0.0]
    assert numeric(["20"], ["19"], abs_tol=1.0) == [1.0]
    assert numeric(["0.5"], ["1/2"]) == [1.0]
    assert numeric(["5"], ["five"]) == [None]  # gold not a number: unscorable
    assert extract_numbers("a -1.5e2 b 3,000 c .5") == [-150.0, 3000.0, 0.5]


def test_regex():
    regex = get_reward("regex")
    opts = {"pattern": r"Answer:\s*(\S+)"}
    assert regex(["Answer: 42", "Answer: 41", "nothing"], ["42"] * 3, **opts) == [1.0, 0.0, None]
    assert regex(["nothing"], ["42"], unparsed=0.0, **opts) == [0.0]
    assert regex(["answer: A; Answer: B"], ["b"], case_sensitive=False, **opts) == [1.0]
    assert regex(["ans=7"], ["7"], pattern=r"ans=(?P<v>\d+)", group="v") == [1.0]


def test_choice():
    choice = get_reward("choice")
    completions = ["The answer is (B).", "\\boxed{C}", "I pick D", "A or B? Answer: A", "none", "b"]
    assert choice(completions, ["B", "(C)", "D.", "A", "A", "B"]) == [1.0, 1.0, 1.0, 1.0, None, 1.0]
    assert choice(["A"], ["Z"]) == [None]  # gold is no valid letter
    assert extract_choice("Either A or C, so C", "ABCD") == "C"
    assert extract_choice("I think", "ABCD") is None  # lower-case 'I' words are not choices


def test_math():
    math = get_reward("math")
    completions = ["so $\\frac{1}{2}$", "\\boxed{0.5}", "the result is \\boxed{3}", "blah", "$x^2$"]
    answers = ["\\frac{1}{2}", "1/2", "4", "4", "x^2"]
    assert math(completions, answers) == [1.0, 1.0, 0.0, None, 1.0]
    assert math(["blah"], ["4"], unparsed=0.0) == [0.0]


# Test-only rewards, importable by workers through `modules=[__name__]`.
class _SleepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


if "_test_sleep" not in REWARDS:
    @register_reward("_test_sleep", options=_SleepOptions)
    def _sleepy(completions, answers):
        """'sleep' hangs, 'crash' kills the process, 'raise' raises, anything else scores 1."""
        out = []
        for c in completions:
            if c == "sleep":
                time.sleep(60)
            elif c == "crash":
                os._exit(3)
            elif c == "raise":
                raise RuntimeError("scorer bug")
            out.append(1.0)
        return out


def test_runner_in_process_matches_direct_call():
    with RewardRunner("numeric", {"unparsed": 0.0}, workers=0) as runner:
        assert runner.score(["19", "x", "18"], ["19", "19", "19"]) == [1.0, 0.0, 0.0]


def test_runner_in_process_makes_a_raising_item_unscorable():
    with RewardRunner("_test_sleep", workers=0) as runner:
        assert runner.score(["ok", "raise", "ok"], ["x"] * 3) == [1.0, None, 1.0]


def test_runner_pool_scores_math_in_workers():
    with RewardRunner("math", workers=2, timeout_s=30) as runner:
        assert runner.score(["\\boxed{3}", "blah", "$\\frac{6}{2}$"], ["3", "3", "3"]) == [1.0, None, 1.0]
        assert runner.score([], []) == []


def test_runner_timeouts_and_crashes_are_unscorable_and_the_pool_recovers():
    # An item's deadline includes a replacement worker's start-up (imports), which took over 1 s
    # on a loaded 2-core CI machine and counted a second timeout: 4 s leaves room for it.
    with RewardRunner("_test_sleep", workers=2, timeout_s=4.0, modules=[__name__]) as runner:
        start = time.monotonic()
        scores = runner.score(["ok", "sleep", "crash", "raise", "ok", "ok"], ["x"] * 6)
        assert scores == [1.0, None, None, None, 1.0, 1.0]
        assert time.monotonic() - start < 30
        assert runner.timeouts == 1 and runner.restarts == 2
        assert runner.score(["ok"] * 4, ["x"] * 4) == [1.0] * 4  # replaced workers serve on


@pytest.mark.parametrize("workers", [0, 1])
def test_a_reward_that_raises_on_every_item_fails_loudly(workers):
    with RewardRunner("_test_sleep", workers=workers, timeout_s=30, modules=[__name__]) as runner:
        with pytest.raises(RewardError, match="'_test_sleep' raised on every item of a batch of 2; "
                                              "first error: RuntimeError: scorer bug"):
            runner.score(["raise", "raise"], ["x", "x"])
        assert runner.score(["raise", "ok"], ["x", "x"]) == [None, 1.0]


def test_runner_validates_up_front():
    with pytest.raises(RewardOptionsError):
        RewardRunner("regex", {"pattern": "no group"}, workers=0)
    with pytest.raises(ValueError, match="valid names"):
        RewardRunner("nope", workers=0)
    with pytest.raises(ValueError, match="timeout_s"):
        RewardRunner("exact", workers=1, timeout_s=0)


def _score_in_daemon(queue):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = RewardRunner("numeric", workers=2)
        queue.put((runner.workers, runner.score(["19"], ["19"]), [str(w.message) for w in caught]))


def test_runner_in_a_daemonic_process_falls_back_to_in_process():
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_score_in_daemon, args=(queue,), daemon=True)
    process.start()
    workers, scores, warned = queue.get(timeout=120)
    process.join(timeout=30)
    assert workers == 0 and scores == [1.0] and any("daemonic" in w for w in warned)


# --------------------------------------------------------------------------- hostile rewards (issue 18)

CATASTROPHIC = r"(.|.)*\Z\A"  # exponential backtracking on any text of a few dozen characters


if "_test_catastrophic" not in REWARDS:
    @register_reward("_test_catastrophic")
    def _catastrophic_reward(completions, answers):
        """What a job with the catastrophic regex would run if it got past validation."""
        return [None if re.search(CATASTROPHIC, c * 40, re.DOTALL) else 0.0 for c in completions]


def test_catastrophic_and_over_deep_patterns_are_refused_at_validation():
    start = time.monotonic()
    with pytest.raises(RewardOptionsError, match="catastrophic backtracking"):
        validate_reward_options("regex", {"pattern": CATASTROPHIC, "dotall": True})
    assert time.monotonic() - start < 2
    with pytest.raises(RewardOptionsError, match="at most 1000 characters"):
        validate_reward_options("regex", {"pattern": "(" * 50_000 + "a" + ")" * 50_000})
    assert validate_reward_options("regex", {"pattern": r"Answer:\s*(\S+)", "dotall": True})


@pytest.mark.parametrize("workers", [0, 1])
def test_every_item_runs_under_its_timeout_whatever_the_worker_count(workers):
    with RewardRunner("_test_catastrophic", workers=workers, timeout_s=0.5,
                      modules=[__name__]) as runner:
        start = time.monotonic()
        assert runner.score(["xy", "zw"], ["1", "1"]) == [None, None]
        assert time.monotonic() - start < 6
        assert runner.timeouts == 2


@pytest.mark.parametrize("workers", [0, 1])
def test_a_stop_interrupts_a_batch_being_scored(workers):
    import threading

    stop = threading.Event()
    with RewardRunner("_test_catastrophic", workers=workers, timeout_s=300, modules=[__name__],
                      should_stop=stop.is_set) as runner:
        threading.Timer(1.0, stop.set).start()
        start = time.monotonic()
        with pytest.raises(ScoringInterrupted):
            runner.score(["xy"] * 4, ["1"] * 4)
        assert time.monotonic() - start < 4  # a stop within ~1 s, not 4 x 300 s
        stop.clear()
        runner.should_stop = None
        assert get_reward("exact")(["1"], ["1"]) == [1.0]
