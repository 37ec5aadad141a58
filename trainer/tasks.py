"""Synthetic arithmetic task for the tiny model: short prompts, exact answers, graded difficulty.

Choices:
- Prompts are bare expressions like ``"12+7="`` and answers the decimal result (``"19"``): a few
  character tokens each, so a model of a few hundred thousand parameters can learn part of the task
  on a CPU in a minute or two.
- Difficulty is a ladder of operation families (`LEVELS`). After the warm start (trainer/warmstart.py)
  the easy rungs are mostly solved and the hard ones mostly not, so per-prompt success probabilities
  are spread across (0, 1): the regime where BASIS's per-prompt priors carry information.
- Prompts are unique within one call (sampled without replacement per level); a level whose space is
  exhausted yields its share to the others, so `n` rows always come back when the space allows.
- Deterministic under `seed`: the same arguments give the same rows on every platform (numpy's PCG64).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: operator and operand ranges (inclusive)."""

    name: str
    op: str
    a: tuple[int, int]
    b: tuple[int, int]

    @functools.cache  # noqa: B019 - a handful of frozen, module-level instances
    def pairs(self) -> np.ndarray:
        """(m, 2) int array of every (a, b) in range; subtraction keeps a >= b (answers >= 0)."""
        a, b = np.meshgrid(np.arange(self.a[0], self.a[1] + 1), np.arange(self.b[0], self.b[1] + 1),
                           indexing="ij")
        pairs = np.stack([a.ravel(), b.ravel()], axis=1)
        return pairs[pairs[:, 0] >= pairs[:, 1]] if self.op == "-" else pairs

    def size(self) -> int:
        """Number of distinct problems in this level."""
        return len(self.pairs())


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}

# Ordered from easiest to hardest; the index is the row's "difficulty".
LEVELS: tuple[Level, ...] = (
    Level("add_1x1", "+", (0, 9), (0, 9)),
    Level("add_2x1", "+", (10, 99), (0, 9)),
    Level("sub_2x1", "-", (10, 99), (0, 9)),
    Level("add_2x2", "+", (10, 99), (10, 99)),
    Level("mul_1x1", "*", (2, 9), (2, 9)),
    Level("sub_2x2", "-", (10, 99), (10, 99)),
    Level("add_3x2", "+", (100, 999), (10, 99)),
    Level("mul_2x1", "*", (10, 99), (2, 9)),
)

# Default mix (the demo's): the first four rungs. After the warm start single-digit sums are mostly
# right, two-digit-and-one-digit sums and differences partly, two-digit sums mostly wrong; the
# rungs above stay near zero for the tiny model and are there for other experiments.
DEFAULT_LEVELS: tuple[int, ...] = (0, 1, 2, 3)
# Bumped whenever the same (n, seed) would give different rows; put it in cached file names.
TASK_VERSION = 2
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 0.5)


def _row(index: int, a: int, b: int) -> dict:
    level = LEVELS[index]
    return {"prompt": f"{a}{level.op}{b}=", "answer": str(_OPS[level.op](a, b)),
            "difficulty": index, "level": level.name}


def _allocate(n: int, weights: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Split n rows over levels in proportion to weights, capped by each level's size."""
    counts = np.zeros(len(weights), dtype=np.int64)
    open_ = weights > 0
    remaining = n
    while remaining > 0 and open_.any():
        share = weights * open_ / (weights * open_).sum()
        want = np.floor(share * remaining).astype(np.int64)
        # Hand out the rounding remainder to the largest fractional parts (ties: lower level).
        short = remaining - int(want.sum())
        order = np.argsort(-(share * remaining - want), kind="stable")
        want[order[:short]] += 1
        add = np.minimum(want, sizes - counts)
        counts += add
        remaining -= int(add.sum())
        open_ &= counts < sizes
    return counts


def _levels_and_weights(levels: Sequence[int] | None, weights: Sequence[float] | None
                        ) -> tuple[list[int], np.ndarray]:
    if levels is None:
        chosen, default = list(DEFAULT_LEVELS), DEFAULT_WEIGHTS
    else:
        chosen, default = list(levels), (1.0,) * len(levels)
    for index in chosen:
        if not 0 <= index < len(LEVELS):
            raise ValueError(f"levels: {index} is not in 0..{len(LEVELS) - 1}")
    w = np.asarray(default if weights is None else weights, dtype=float)
    if w.shape != (len(chosen),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(chosen)} non-negative numbers, not all zero")
    return chosen, w


def _finish(rows: list[dict], prefix: str) -> list[dict]:
    return [{"id": f"{prefix}-{i}", **row} for i, row in enumerate(rows)]


def generate_arithmetic(n: int, seed: int = 0, *, levels: Sequence[int] | None = None,
                        weights: Sequence[float] | None = None) -> list[dict]:
    """`n` distinct arithmetic problems, shuffled, deterministic under `seed`.

    levels: indices into `LEVELS` (default `DEFAULT_LEVELS`); weights: relative frequency of each
    (default `DEFAULT_WEIGHTS` with the default levels, else equal). A level with fewer problems
    than its share gives the rest to the others. Rows are
    ``{"id": "arith-{seed}-{i}", "prompt": "12+7=", "answer": "19", "difficulty": int, "level": str}``.
    Raises ValueError if fewer than `n` distinct problems exist in the chosen levels.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chosen, w = _levels_and_weights(levels, weights)
    sizes = np.asarray([LEVELS[i].size() for i in chosen])
    if n > int(sizes[w > 0].sum()):
        raise ValueError(f"only {int(sizes[w > 0].sum())} distinct problems exist; asked for {n}")
    counts = _allocate(n, w, sizes)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for index, count in zip(chosen, counts.tolist(), strict=True):
        pairs = LEVELS[index].pairs()
        rows.extend(_row(index, a, b)
                    for a, b in pairs[rng.choice(len(pairs), size=count, replace=False)].tolist())
    return _finish([rows[i] for i in rng.permutation(len(rows)).tolist()], f"arith-{seed}")


def sample_arithmetic(n: int, seed: int = 0, *, levels: Sequence[int] | None = None,
                      weights: Sequence[float] | None = None) -> list[dict]:
    """`n` problems drawn independently (repeats allowed): level by `weights`, then operands
    uniformly. For supervised training, where a small level must be seen more often than it has
    distinct problems. Same row format as `generate_arithmetic`, ids "sample-{seed}-{i}"."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chosen, w = _levels_and_weights(levels, weights)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(chosen), size=n, p=w / w.sum())
    pairs = [LEVELS[i].pairs() for i in chosen]
    rows = []
    for k in picks.tolist():
        a, b = pairs[k][rng.integers(len(pairs[k]))].tolist()
        rows.append(_row(chosen[k], a, b))
    return _finish(rows, f"sample-{seed}")


def write_jsonl(rows: Iterable[Mapping], path: str | os.PathLike) -> Path:
    """Write rows as JSONL (UTF-8, one object per line), atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
