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

# Default mix: more weight on the middle of the ladder, where warm-started success rates sit
# between 0 and 1 and RL has most to gain.
DEFAULT_WEIGHTS: tuple[float, ...] = (1.0, 1.5, 1.5, 1.5, 1.0, 1.0, 0.75, 0.75)


def _level_rows(level: Level, index: int, count: int, rng: np.random.Generator) -> list[dict]:
    """`count` distinct problems of one level (count <= level.size())."""
    pairs = level.pairs()
    rows = []
    for a, b in pairs[rng.choice(len(pairs), size=count, replace=False)].tolist():
        rows.append({"prompt": f"{a}{level.op}{b}=", "answer": str(_OPS[level.op](a, b)),
                     "difficulty": index, "level": level.name})
    return rows


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


def generate_arithmetic(n: int, seed: int = 0, *, levels: Sequence[int] | None = None,
                        weights: Sequence[float] | None = None) -> list[dict]:
    """`n` distinct arithmetic problems, shuffled, deterministic under `seed`.

    levels: indices into `LEVELS` to draw from (default all); weights: relative frequency of each
    chosen level (default `DEFAULT_WEIGHTS`). Rows are
    ``{"id": "arith-{seed}-{i}", "prompt": "12+7=", "answer": "19", "difficulty": int, "level": str}``.
    Raises ValueError if fewer than `n` distinct problems exist in the chosen levels.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chosen = list(range(len(LEVELS))) if levels is None else list(levels)
    for index in chosen:
        if not 0 <= index < len(LEVELS):
            raise ValueError(f"levels: {index} is not in 0..{len(LEVELS) - 1}")
    w = np.asarray([DEFAULT_WEIGHTS[i] for i in chosen] if weights is None else weights, float)
    if w.shape != (len(chosen),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(chosen)} non-negative numbers, not all zero")
    sizes = np.asarray([LEVELS[i].size() for i in chosen])
    if n > int(sizes[w > 0].sum()):
        raise ValueError(f"only {int(sizes[w > 0].sum())} distinct problems exist; asked for {n}")
    counts = _allocate(n, w, sizes)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for index, count in zip(chosen, counts.tolist(), strict=True):
        rows.extend(_level_rows(LEVELS[index], index, count, rng))
    rows = [rows[i] for i in rng.permutation(len(rows)).tolist()]
    for i, row in enumerate(rows):
        row["id"] = f"arith-{seed}-{i}"
    return [{"id": r["id"], **{k: v for k, v in r.items() if k != "id"}} for r in rows]


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
