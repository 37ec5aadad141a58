"""Supervised warm start: the loss falls, the result loads, and the run is deterministic."""

import shutil

from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.tasks import DEFAULT_LEVELS, generate_arithmetic
from trainer.tiny import build_tiny_model
from trainer.warmstart import (
    _batch,
    accuracy_by_difficulty,
    default_rows,
    greedy_answers,
    warm_start,
)


def test_batch_supervises_only_answer_and_eos(tiny_tokenizer):
    ids, labels, mask = _batch([{"prompt": "1+2=", "answer": "3"},
                                {"prompt": "10+20=", "answer": "30"}], tiny_tokenizer)
    assert ids.shape == labels.shape == mask.shape == (2, 10)
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    assert [t for t in labels[0].tolist() if t != -100] == [6 + ord("3"), eos]
    assert [t for t in labels[1].tolist() if t != -100] == [6 + ord("3"), 6 + ord("0"), eos]
    assert mask[0].tolist() == [1] * 7 + [0] * 3 and ids[0, 7:].tolist() == [pad] * 3


def test_loss_falls_output_loads_and_runs_repeat(tmp_path):
    base = build_tiny_model(tmp_path / "base", hidden=64, layers=1, seed=0)
    rows = generate_arithmetic(64, seed=0, levels=[0])
    runs, seen = [], []
    for name in ("a", "b"):
        shutil.copytree(base, tmp_path / name)
        # Run b reports progress: the same losses, so reporting draws nothing.
        progress = (lambda *args: seen.append(args)) if name == "b" else None
        runs.append(warm_start(tmp_path / name, rows=rows, steps=25, batch_size=16, lr=1e-2, seed=1,
                               progress=progress))
    assert [s[:2] for s in seen] == [(i, 25) for i in range(1, 26)]
    assert seen[-1][2] == f", loss {runs[1].losses[-1]:.3f}"
    report = runs[0]
    assert report.steps == 25 and len(report.losses) == 25 and report.seconds > 0
    assert sum(report.losses[-5:]) / 5 < 0.6 * sum(report.losses[:5]) / 5
    assert runs[0].losses == runs[1].losses  # deterministic under a seed, one thread

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    answers = greedy_answers(model, tokenizer, ["1+2=", "3+4=", "10+5="], max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) and len(a) <= 4 for a in answers)
    accuracy = accuracy_by_difficulty(tmp_path / "a", rows[:16])
    assert set(accuracy) == {"0", "all"} and 0.0 <= accuracy["all"] <= 1.0


def test_default_stream_teaches_the_sum_table_first():
    stream = default_rows(steps=30, batch_size=8, seed=0)
    assert len(stream) == 240
    assert {r["difficulty"] for r in stream[:80]} == {0}  # first third: single-digit sums
    assert {r["difficulty"] for r in stream[80:]} == set(DEFAULT_LEVELS)
    assert stream == default_rows(steps=30, batch_size=8, seed=0)


def test_default_stream_can_leave_out_given_prompts():
    plain = default_rows(steps=30, batch_size=8, seed=0)
    banned = {r["prompt"] for r in plain[80:120]}
    stream = default_rows(steps=30, batch_size=8, seed=0, exclude=banned)
    assert len(stream) == 240 and not banned & {r["prompt"] for r in stream}


def test_target_accuracy_stops_the_run_at_a_check(tmp_path, monkeypatch):
    monkeypatch.setattr("trainer.warmstart.CHECK_EVERY", 5)
    model = build_tiny_model(tmp_path / "m", hidden=64, layers=1, seed=0)
    rows = generate_arithmetic(32, seed=0, levels=[0])
    report = warm_start(model, rows=rows, steps=40, batch_size=8, target_accuracy=0.0,
                        validation=rows[:4])
    assert report.steps == 5 and report.validation[0][0] == 5 and len(report.losses) == 5
    report = warm_start(model, rows=rows, steps=12, batch_size=8, target_accuracy=1.01,
                        validation=rows[:4])
    assert report.steps == 12 and [s for s, _ in report.validation] == [5, 10]
