"""Rewards that fail the way real ones do, for the trainer-failure test (test_trainer_failures.py).

Registered into `trainer.rewards` like any user reward. The worker process gets them through a
`sitecustomize` that imports this module (the test writes it and puts it on PYTHONPATH), the API
in the test process by importing this module. Both are called in-process (`reward_workers: 0`), so
what they raise is raised inside the training step.
"""

from __future__ import annotations

from trainer.rewards import REWARDS, register_reward

# A user reward with a bug: it looks answers up in a table that does not hold them.
KNOWN_ANSWERS: dict[str, str] = {}


def lookup_reward(completions: list[str], answers: list[str]) -> list[float | None]:
    """KeyError on the first answer."""
    return [float(c.strip() == KNOWN_ANSWERS[a]) for c, a in zip(completions, answers, strict=True)]


def greedy_reward(completions: list[str], answers: list[str]) -> list[float | None]:
    """Asks torch's CPU allocator for 4 EiB: a real allocation failure (the allocator refuses at
    once, so nothing is actually consumed), the same error a step that runs out of memory raises."""
    import torch

    torch.empty(2**62, dtype=torch.uint8)
    return [0.0] * len(completions)


def catastrophic_regex_reward(completions: list[str], answers: list[str]) -> list[float | None]:
    """The issue-18 pattern `(.|.)*\\Z\\A` with dotall, as the `regex` reward would run it had it
    passed validation: exponential backtracking, minutes per item on a few dozen characters."""
    import re

    return [None if re.search(r"(.|.)*\Z\A", c + "x" * 40, re.DOTALL) else 0.0 for c in completions]


for _name, _fn in (("buggy_lookup", lookup_reward), ("out_of_memory", greedy_reward),
                   ("catastrophic_regex", catastrophic_regex_reward)):
    if _name not in REWARDS:  # imported once by sitecustomize and maybe again by name
        register_reward(_name)(_fn)
