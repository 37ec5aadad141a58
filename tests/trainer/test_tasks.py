"""Synthetic arithmetic task: correct answers, distinct prompts, graded difficulty, determinism."""

import json
from collections import Counter

import pytest

from trainer.tasks import (
    DEFAULT_LEVELS,
    LEVELS,
    generate_arithmetic,
    sample_arithmetic,
    write_jsonl,
)


def test_answers_are_the_arithmetic_result():
    every_level = range(len(LEVELS))
    rows = generate_arithmetic(500, seed=3, levels=every_level) + sample_arithmetic(
        500, seed=3, levels=every_level)
    assert {r["difficulty"] for r in rows} == set(every_level)
    for row in rows:
        expression = row["prompt"]
        assert expression.endswith("=")
        assert str(eval(expression[:-1])) == row["answer"]  # noqa: S307 - digits and one operator
        assert int(row["answer"]) >= 0
        assert LEVELS[row["difficulty"]].name == row["level"]


def test_rows_are_distinct_deterministic_and_cover_every_level():
    rows = generate_arithmetic(2000, seed=7)
    assert len({r["prompt"] for r in rows}) == 2000
    assert len({r["id"] for r in rows}) == 2000
    assert rows == generate_arithmetic(2000, seed=7)
    assert rows != generate_arithmetic(2000, seed=8)
    counts = Counter(r["difficulty"] for r in rows)
    assert set(counts) == set(DEFAULT_LEVELS)
    assert counts[0] == 100  # the single-digit level holds only 100 problems; others take the rest


def test_sampling_repeats_problems_in_proportion_to_weights():
    rows = sample_arithmetic(4000, seed=2, levels=[0, 1], weights=[3, 1])
    assert rows == sample_arithmetic(4000, seed=2, levels=[0, 1], weights=[3, 1])
    counts = Counter(r["difficulty"] for r in rows)
    assert 2800 < counts[0] < 3200
    assert len({r["prompt"] for r in rows if r["difficulty"] == 0}) == 100  # repeats allowed
    assert len({r["id"] for r in rows}) == 4000


def test_small_levels_are_capped_and_their_share_goes_elsewhere():
    rows = generate_arithmetic(300, seed=0, levels=[0, 1], weights=[1, 1])
    assert Counter(r["level"] for r in rows) == {"add_1x1": 100, "add_2x1": 200}
    with pytest.raises(ValueError, match="only 164 distinct problems"):
        generate_arithmetic(165, seed=0, levels=[0, 4])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="levels"):
        generate_arithmetic(10, levels=[99])
    with pytest.raises(ValueError, match="weights"):
        generate_arithmetic(10, levels=[0, 1], weights=[1.0])
    with pytest.raises(ValueError, match="n must be"):
        generate_arithmetic(-1)


def test_write_jsonl_round_trips(tmp_path):
    rows = generate_arithmetic(20, seed=1)
    path = write_jsonl(rows, tmp_path / "sub" / "a.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows
    assert not list(path.parent.glob(".*tmp"))
