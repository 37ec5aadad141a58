"""trainer/evaluate.py: the pass@k estimator's exact values, the summary's figures, an evaluation run
on a tiny model, and the training loop's held-out eval going through the same code path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trainer.config import ConfigError, EvalConfig, TrainConfig
from trainer.evaluate import evaluate, pass_at_k, pass_ks, summarize
from trainer.loop import train
from trainer.sinks import JsonlSink, read_jsonl_metrics
from trainer.tasks import generate_arithmetic, write_jsonl
from trainer.tiny import build_tiny_model
from trainer.warmstart import warm_start


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 1, 2 / 5),            # k = 1 is c / n
    (5, 2, 2, 1 - 3 / 10),       # 1 - C(3,2)/C(5,2)
    (4, 1, 2, 1 - 3 / 6),        # 1 - C(3,2)/C(4,2)
    (10, 3, 5, 1 - 21 / 252),    # 1 - C(7,5)/C(10,5)
    (5, 2, 5, 1.0),              # k = n: any correct sample passes
    (5, 0, 5, 0.0),              # k = n, nothing correct
    (8, 0, 3, 0.0),              # c = 0
    (8, 8, 1, 1.0),              # c = n
    (8, 8, 8, 1.0),
    (1, 1, 1, 1.0),
    (1, 0, 1, 0.0),
    (16, 1, 4, 1 - 1365 / 1820),  # 1 - C(15,4)/C(16,4) = 4/16
])
def test_pass_at_k_exact_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-15)


def test_pass_at_k_is_not_the_biased_estimate_and_refuses_bad_counts():
    # The naive 1 - (1 - c/n)^k under-counts: with 2 of 4 correct, any 3 samples hold a correct one.
    assert pass_at_k(4, 2, 3) == 1.0 and 1 - (1 - 2 / 4) ** 3 == 0.875
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError, match="pass@k"):
            pass_at_k(n, c, k)


def test_reported_ks():
    assert pass_ks(1) == [1] and pass_ks(2) == [1, 2] and pass_ks(6) == [1, 2, 4, 6]
    assert pass_ks(8) == [1, 2, 4, 8]


def test_summary_figures_by_hand():
    nan = float("nan")
    rewards = np.array([[1.0, 0.0, nan, 1.0],    # c = 2
                        [0.0, 0.0, 0.0, 0.0],    # c = 0
                        [0.5, 1.0, nan, nan]])   # c = 1 (0.5 is partial credit, not correct)
    lengths = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    s = summarize(rewards, lengths)
    assert (s.rows, s.samples_per_prompt) == (3, 4)
    assert s.accuracy == 3 / 12
    assert s.mean_reward == pytest.approx(3.5 / 12)
    assert s.unscorable_frac == 3 / 12
    assert s.mean_response_tokens == 6.5
    assert s.pass_at_k[1] == pytest.approx((2 / 4 + 0 + 1 / 4) / 3)
    assert s.pass_at_k[2] == pytest.approx(((1 - 1 / 6) + 0 + (1 - 3 / 6)) / 3)
    assert s.pass_at_k[4] == pytest.approx(2 / 3)
    assert sorted(s.pass_at_k) == [1, 2, 4]
    metrics = s.metrics()
    assert metrics["eval/pass@4"] == s.pass_at_k[4] and metrics["eval/rows"] == 3
    assert math.isnan(summarize(np.zeros((0, 2))).accuracy)


# ------------------------------------------------------------------------------ on a tiny model


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny model warm-started on the sum table (so it gets some answers right), and data."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate")
    model = build_tiny_model(root / "model", layers=1, hidden=64, heads=2, seed=0)
    warm_start(model, rows=generate_arithmetic(64, seed=0, levels=[0]), steps=60, batch_size=16,
               lr=1e-2, seed=1)
    data = write_jsonl(generate_arithmetic(40, seed=5, levels=[0]), root / "data.jsonl")
    held_out = write_jsonl(generate_arithmetic(24, seed=6, levels=[0]), root / "held_out.jsonl")
    return root, model, data, held_out


class Recorder:
    def __init__(self):
        self.steps, self.events = [], []

    def log_step(self, step, metrics, histograms, samples=()):
        self.steps.append((step, dict(metrics), list(samples)))

    def log_event(self, kind, message, data=None):
        self.events.append(kind)

    def close(self):
        pass


def eval_config(assets, **kw) -> EvalConfig:
    _, model, _, held_out = assets
    base = dict(model=str(model), dataset=str(held_out), reward="exact", max_new_tokens=4,
                reward_workers=0, batch_rows=10)
    return EvalConfig(**{**base, **kw})


def test_held_out_eval_of_training_is_the_evaluation_code_path(assets, tmp_path):
    """The loop's step-0 held-out accuracy equals a greedy k=1 evaluation of the same rows."""
    _, model, data, held_out = assets
    cfg = TrainConfig(model=str(model), dataset=str(data), eval_dataset=str(held_out), reward="exact",
                      estimator="reinforce_pp", batch_size=4, n0=0, max_steps=1, eval_every=0,
                      sampling={"max_new_tokens": 4}, reward_workers=0, checkpoint_every=0)
    train(cfg, JsonlSink(tmp_path / "m.jsonl"), run_dir=tmp_path / "run")
    in_training = read_jsonl_metrics(tmp_path / "m.jsonl")[0]["eval/accuracy"]
    alone = evaluate(eval_config(assets), Recorder()).summary
    assert alone.accuracy == in_training
    assert 0 < in_training < 1, "the warm start should get some but not all answers right"


def test_evaluation_logs_each_batch_with_every_sample(assets):
    sink, statuses = Recorder(), []
    result = evaluate(eval_config(assets, samples_per_prompt=3, temperature=1.0, max_rows=23, seed=4),
                      sink, on_status=statuses.append)
    s = result.summary
    assert not result.stopped and statuses == ["running"]
    assert (s.rows, s.samples_per_prompt) == (23, 3) and sorted(s.pass_at_k) == [1, 2, 3]
    assert s.pass_at_k[1] == pytest.approx(s.accuracy)  # pass@1 is the accuracy
    assert s.pass_at_k[1] <= s.pass_at_k[2] <= s.pass_at_k[3]
    assert 0 < s.mean_response_tokens <= 4
    assert [step for step, _, _ in sink.steps] == [1, 2, 3]
    assert [m["eval/rows"] for _, m, _ in sink.steps] == [10, 20, 23]
    assert sink.steps[-1][1]["eval/accuracy"] == s.accuracy
    samples = [x for _, _, batch in sink.steps for x in batch]
    assert [x.index for x in samples] == list(range(69))
    rows = [json.loads(line) for line in assets[3].read_text().splitlines()]
    assert samples[3 * 7 + 2].answer == rows[7]["answer"] and "=" in samples[0].prompt
    correct = sum(x.reward is not None and x.reward >= 1 for x in samples)
    assert correct / 69 == s.accuracy
    # The same seed draws the same completions.
    again = evaluate(eval_config(assets, samples_per_prompt=3, temperature=1.0, max_rows=23, seed=4),
                     Recorder())
    assert again.summary == s


def test_a_stop_ends_the_evaluation_between_batches(assets):
    sink = Recorder()
    result = evaluate(eval_config(assets), sink, should_stop=lambda: len(sink.steps) >= 1)
    assert result.stopped and result.summary.rows == 10 and len(sink.steps) == 1


def test_bad_evaluation_configs_name_the_field(assets, tmp_path):
    with pytest.raises(ValueError, match="samples_per_prompt: 4 samples at temperature 0"):
        eval_config(assets, samples_per_prompt=4)
    with pytest.raises(ValueError, match="reward: unknown 'nope'"):
        eval_config(assets, reward="nope")
    with pytest.raises(ValueError, match="engine: unknown"):
        eval_config(assets, engine="nope")
    with pytest.raises(ConfigError, match="dataset: file"):
        evaluate(eval_config(assets, dataset=str(tmp_path / "missing.jsonl")), Recorder())
