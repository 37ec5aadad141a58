"""Async rollouts (one step off-policy, trainer/offpolicy.py) on a one-layer tiny model: which
policy generated each batch, the behaviour logprobs the loss is corrected with, exact resume, BASIS,
the config's refusals, and the engine's private RNG and stop flag."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.checkpoint import checkpoint_dir
from trainer.config import ConfigError, TrainConfig
from trainer.interrupt import GenerationInterrupted
from trainer.loop import train
from trainer.memory import ModelShape, estimate_memory
from trainer.offpolicy import AsyncRollouts
from trainer.rollout.base import EngineConfig, SamplingParams
from trainer.rollout.hf import HFEngine
from trainer.sinks import JsonlSink, read_jsonl_metrics
from trainer.tasks import generate_arithmetic, write_jsonl
from trainer.tiny import build_tiny_model


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("async")
    model = build_tiny_model(root / "model", layers=1, hidden=64, heads=2)
    data = write_jsonl(generate_arithmetic(48, seed=0), root / "data.jsonl")
    return root, model, data


def config(assets, **kw) -> TrainConfig:
    root, model, data = assets
    base = dict(model=str(model), dataset=str(data), reward="exact", batch_size=6,
                sampling={"max_new_tokens": 6}, optimizer={"lr": 3e-2, "micro_batch_size": 4},
                n0=2, max_steps=4, eval_every=0, eval_size=4, reward_workers=0,
                checkpoint_every=0, priors_cache_dir=str(root / "priors"), seed=3,
                async_rollouts=True, loss={"tis_cap": 2.0})
    return TrainConfig.from_dict({**base, **kw})


def _logprobs(model_dir, rollouts) -> list[list[float]]:
    """Per response token log p under the weights in `model_dir` (temperature 1, full vocab)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for r in rollouts:
            ids = torch.tensor([r["prompt_ids"] + r["response_ids"]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            tokens = ids[0, 1:]
            picked = logp.gather(-1, tokens[:, None]).squeeze(-1)
            out.append(picked[len(r["prompt_ids"]) - 1:].tolist())
    return out


def _max_gap(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))


def test_each_batch_comes_from_the_policy_one_update_behind(assets, tmp_path):
    """Step t trains version t-1 (t-1 updates) on rollouts that version t-2 generated; the
    rollouts' logprobs, which the TIS weights divide by, are that generating version's."""
    cfg = config(assets, checkpoint_every=1)  # BASIS: all-zero rewards still move the policy
    train(cfg, JsonlSink(tmp_path / "m.jsonl"), run_dir=tmp_path / "run")
    m = read_jsonl_metrics(tmp_path / "m.jsonl")
    assert [m[s]["async/policy_version"] for s in (1, 2, 3, 4)] == [0, 0, 1, 2]
    assert [m[s]["async/staleness_steps"] for s in (1, 2, 3, 4)] == [0, 1, 1, 1]
    assert all("tis/mean_weight" in m[s] and "tis/clipped_frac" in m[s] for s in (1, 2, 3, 4))
    # The step-2 checkpoint holds step 3's batch, generated from version 1 = the step-1 weights.
    state = json.loads((checkpoint_dir(tmp_path / "run", 2) / "state.json").read_text())
    pending = state["async"]
    assert (pending["step"], pending["version"]) == (3, 1)
    engine = [r["logprobs"] for r in pending["rollouts"]]
    by_v1 = _logprobs(checkpoint_dir(tmp_path / "run", 1) / "model", pending["rollouts"])
    by_v2 = _logprobs(checkpoint_dir(tmp_path / "run", 2) / "model", pending["rollouts"])
    assert _max_gap(engine, by_v1) < 1e-4
    assert _max_gap(engine, by_v2) > 1e-3  # the update moved the policy: it is not version 2


def test_resume_from_a_periodic_checkpoint_is_exact_with_basis(assets, tmp_path):
    """BASIS (batchwise, priors) async: 5 steps straight == die after the step-2 checkpoint and
    resume (the checkpoint carries step 3's prefetched batch)."""
    cfg = config(assets, max_steps=5, checkpoint_every=2)
    train(cfg, JsonlSink(tmp_path / "a.jsonl"), run_dir=tmp_path / "a")

    class Died(Exception):
        pass

    def die(step, path):
        if step == 2:
            raise Died

    with pytest.raises(Died):
        train(cfg, JsonlSink(tmp_path / "b.jsonl"), run_dir=tmp_path / "b", on_checkpoint=die)
    result = train(cfg, JsonlSink(tmp_path / "b.jsonl"), run_dir=tmp_path / "b")
    assert result.steps == 5
    drop = ("time/", "throughput/", "priors/seconds", "priors/cached", "async/wait",
            "async/generate_seconds")
    a, b = (read_jsonl_metrics(tmp_path / f"{x}.jsonl") for x in "ab")
    strip = lambda m: {s: {k: v for k, v in x.items() if not k.startswith(drop)}  # noqa: E731
                       for s, x in m.items()}
    assert strip(a) == strip(b)
    assert "basis/c" in a[3] and a[3]["async/staleness_steps"] == 1


def test_a_stop_between_steps_checkpoints_and_the_resume_finishes(assets, tmp_path):
    cfg = config(assets, max_steps=4, estimator="reinforce_pp", n0=0)
    stop = threading.Event()

    class StopAfter2(JsonlSink):
        def log_step(self, step, *a, **kw):
            super().log_step(step, *a, **kw)
            if step == 2:
                stop.set()

    first = train(cfg, StopAfter2(tmp_path / "m.jsonl"), run_dir=tmp_path / "run",
                  should_stop=stop.is_set)
    assert first.stopped and first.steps == 2
    second = train(cfg, JsonlSink(tmp_path / "m.jsonl"), run_dir=tmp_path / "run")
    assert second.steps == 4 and not second.stopped
    m = read_jsonl_metrics(tmp_path / "m.jsonl")
    # Step 3's batch was either done at the stop (kept: staleness 1) or cancelled and regenerated
    # from the checkpoint's weights (staleness 0); either way from the same prompts.
    assert m[3]["async/staleness_steps"] in (0, 1) and m[4]["async/staleness_steps"] == 1


@pytest.mark.parametrize(("change", "needle"), [
    ({"num_processes": 2, "batch_size": 6}, "async_rollouts: not supported with num_processes 2"),
    ({"engine": "vllm"}, "async_rollouts: runs on engine 'hf' only"),
    ({"loss": {}}, "async_rollouts: needs loss.tis_cap"),
])
def test_combinations_that_cannot_work_are_refused(assets, change, needle):
    with pytest.raises(ConfigError, match=needle):
        config(assets, **change)
    assert TrainConfig.model_fields["async_rollouts"].default is False


def test_private_rng_engine_is_seeded_by_the_call_and_leaves_the_global_rng_alone(assets):
    _, model_dir, _ = assets
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    engine = HFEngine(model, AutoTokenizer.from_pretrained(model_dir), private_rng=True)
    params = SamplingParams(max_new_tokens=8, seed=11)
    before = torch.get_rng_state()
    a = engine.generate([[2, 50, 51], [2, 60]], 3, params)
    b = engine.generate([[2, 50, 51], [2, 60]], 3, params)
    assert torch.equal(before, torch.get_rng_state())
    assert [r.response_ids for r in a] == [r.response_ids for r in b]
    assert len({tuple(r.response_ids) for r in a}) > 1  # it samples
    stop = threading.Event()
    stop.set()
    with pytest.raises(GenerationInterrupted):
        engine.generate([[2, 50]], 1, params, stop=stop)


def test_the_memory_estimate_counts_the_generating_copy():
    shape = ModelShape(params=10_000_000, lora_params=0, hidden=256, intermediate=1024, layers=8,
                       vocab=8192, kv_dim=256, embed_params=2_000_000)
    off = estimate_memory(shape, max_seq=512)
    on = estimate_memory(shape, max_seq=512, async_copy=True)
    assert on.terms["async_copy"] == off.terms["weights"] == 4e7
    # the copy generates while the update runs: its KV cache sits on top of the update's peak
    assert on.phases["update"] == off.phases["update"] + 4e7 + off.terms["kv_cache"] + 256 * 8192 * 8
    assert on.peak > off.peak


def test_lora_copies_only_the_adapter_into_the_generating_copy(assets, tmp_path):
    cfg = config(assets, max_steps=3, lora={"r": 4, "alpha": 8, "dropout": 0.1})
    result = train(cfg, JsonlSink(tmp_path / "m.jsonl"), run_dir=tmp_path / "run")
    m = read_jsonl_metrics(tmp_path / "m.jsonl")
    assert result.steps == 3 and [m[s]["async/staleness_steps"] for s in (1, 2, 3)] == [0, 1, 1]
    # the copy's sync: trainable tensors only, and afterwards they are equal
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(assets[1]),
                           LoraConfig(r=4, target_modules="all-linear"))
    copy = AsyncRollouts(model, AutoTokenizer.from_pretrained(assets[1]), EngineConfig())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    copy.sync(model, version=1)
    theirs = dict(copy.snapshot.named_parameters())
    assert all(torch.equal(p, theirs[n]) for n, p in model.named_parameters())
    assert copy.version == 1 and not any(p.requires_grad for p in copy.snapshot.parameters())
    copy.close()

