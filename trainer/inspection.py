"""What a user reads while a run trains: a bounded sample of each step's rollouts, and the guard
that notices rewards which cannot score the model's answers.

Choices:
- Samples are chosen evenly across the step's prompt-major batch (`np.linspace`), so the k rollouts
  of one prompt do not crowd out the others and the choice is deterministic (a resumed run keeps
  the same ones). Texts are cut at `MAX_SAMPLE_CHARS`: a sample is for reading, not for replay.
- The guard warns once, on the first step (within `WARN_WITHIN_STEPS`) where most rewards are
  unscorable, quoting one completion and its expected answer: the usual cause is a reward type that
  does not match the answer format (`choice` on numeric answers), which no metric names by itself.
  It fails the run, with the same example, after `fail_steps` consecutive steps where every reward
  was unscorable: such a run cannot learn, and "succeeded at reward 0" hides that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from trainer.config import ConfigError
from trainer.sinks import MetricsSink, Sample

__all__ = ["MAX_SAMPLE_CHARS", "UnscorableGuard", "UnscorableRewards", "select_samples"]

MAX_SAMPLE_CHARS = 4000
WARN_WITHIN_STEPS = 5

# What each built-in reward expects in a completion, for the warning's "likely cause".
_EXPECTS = {
    "math": "a final number or expression (e.g. '12+7=19', '\\boxed{19}')",
    "numeric": "a number",
    "choice": "a letter such as 'B' or '(B)'",
    "exact": "exactly the answer text",
    "regex": "a match of its `pattern` option",
}


class UnscorableRewards(ConfigError):
    """Every reward of the last `unscorable_fail_steps` steps was unscorable."""


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def select_samples(count: int, *, prompt_ids: Sequence[str], prompt_tokens: Sequence[list[int]],
                   completions: Sequence[str], answers: Sequence[str], finish_reasons: Sequence[str],
                   rewards: np.ndarray, advantages: np.ndarray, baselines: np.ndarray,
                   decode: Callable[[list[int]], str]) -> list[Sample]:
    """Up to `count` of the step's n rollouts (all (n,) in the batch's order), spread evenly."""
    n = len(completions)
    if count <= 0 or n == 0:
        return []
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(count, n)).round()})
    return [Sample(index=i, prompt_id=str(prompt_ids[i]),
                   prompt=decode(list(prompt_tokens[i]))[:MAX_SAMPLE_CHARS],
                   completion=completions[i][:MAX_SAMPLE_CHARS],
                   answer=str(answers[i])[:MAX_SAMPLE_CHARS],
                   reward=_finite(rewards[i]), advantage=float(np.nan_to_num(advantages[i])),
                   baseline=_finite(baselines[i]), finish_reason=finish_reasons[i])
            for i in picks]


class UnscorableGuard:
    """Warns when most rewards of an early step are unscorable; fails after `fail_steps` all-None."""

    def __init__(self, reward: str, fail_steps: int, sink: MetricsSink):
        self.reward = reward
        self.fail_steps = fail_steps
        self.sink = sink
        self.warned = False
        self.run = 0  # consecutive steps with every reward unscorable

    def _cause(self, completions: Sequence[str], answers: Sequence[str], rewards: np.ndarray) -> str:
        bad = [i for i in range(len(rewards)) if np.isnan(rewards[i])]
        i = bad[0] if bad else 0
        expects = _EXPECTS.get(self.reward, "an answer it can parse")
        return (f"reward '{self.reward}' expects {expects}; for example the completion "
                f"{completions[i][:200]!r} (expected answer {str(answers[i])[:100]!r}) got no score. "
                "Check that the reward type matches the dataset's answer format, or that the model "
                "answers in that format (a prompt template, more max_new_tokens)")

    def check(self, step: int, completions: Sequence[str], answers: Sequence[str],
              rewards: np.ndarray) -> None:
        """Look at one step's (n,) rewards (NaN = unscorable); raises UnscorableRewards."""
        unscorable = np.isnan(rewards)
        frac = float(unscorable.mean()) if rewards.size else 0.0
        self.run = self.run + 1 if rewards.size and unscorable.all() else 0
        if not self.warned and step <= WARN_WITHIN_STEPS and frac > 0.5:
            self.warned = True
            self.sink.log_event(
                "warning", f"{frac:.0%} of the rewards at step {step} are unscorable: "
                + self._cause(completions, answers, rewards),
                {"step": step, "unscorable_frac": frac, "reward": self.reward})
        if self.fail_steps and self.run >= self.fail_steps:
            raise UnscorableRewards(
                f"every reward was unscorable for {self.run} steps in a row (unscorable_fail_steps="
                f"{self.fail_steps}): " + self._cause(completions, answers, rewards))
