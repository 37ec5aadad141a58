"""Memory features: micro-batch plans, gradient checkpointing and token budgets leave the update
unchanged, and the memory estimate refuses a job that cannot fit before anything loads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from trainer.checkpoint import checkpoint_dir
from trainer.config import ConfigError, TrainConfig
from trainer.loop import train
from trainer.memory import ModelShape, estimate_memory, plan_micro_batches
from trainer.sinks import JsonlSink, read_jsonl_metrics
from trainer.tasks import generate_arithmetic, write_jsonl
from trainer.tiny import build_tiny_model


def test_fixed_plan_is_consecutive_chunks():
    assert plan_micro_batches([5, 1, 9, 2, 7], 2) == [[0, 1], [2, 3], [4]]


def test_token_budget_plan_sorts_packs_and_covers_every_sequence_once():
    lengths = [5, 30, 9, 2, 7, 12, 12, 1, 40]
    plan = plan_micro_batches(lengths, 2, max_tokens=24)
    assert sorted(i for part in plan for i in part) == list(range(len(lengths)))
    for part in plan:
        longest = max(lengths[i] for i in part)
        assert len(part) == 1 or len(part) * longest <= 24  # alone only when over budget
        assert lengths[part[0]] == longest  # longest first
    assert [8] in plan and [1] in plan  # 40 and 30 exceed the budget: one each
    assert len(plan) < len(lengths)  # short sequences were packed together


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mem")
    model = build_tiny_model(root / "model", layers=2, hidden=64, heads=2)
    data = write_jsonl(generate_arithmetic(40, seed=0), root / "data.jsonl")
    return root, model, data


def run_one_step(assets, name, steps=1, **kw):
    """(step metrics, weights) after `steps` steps; with plain SGD at lr 1 (the tests patch AdamW)
    one step's weight change is minus the gradient."""
    root, model, data = assets
    optimizer = {"lr": 1.0, "grad_clip": 0.0, "micro_batch_size": 3, **kw.pop("optimizer", {})}
    config = TrainConfig(model=str(model), dataset=str(data), reward="exact", batch_size=8,
                         sampling={"max_new_tokens": 6}, optimizer=optimizer, n0=2,
                         priors_cache_dir=str(root / "priors"), max_steps=steps,
                         eval_every=0, eval_size=2,
                         reward_workers=0, checkpoint_every=0, seed=3,
                         run_dir=str(root / name), **kw)
    sink = JsonlSink(root / name / "metrics.jsonl")
    train(config, sink, run_dir=root / name, resume=False)
    sink.close()
    return (read_jsonl_metrics(root / name / "metrics.jsonl")[steps],
            load_file(checkpoint_dir(root / name, steps) / "model" / "model.safetensors"))


def _sgd(params, lr, betas, weight_decay):
    return torch.optim.SGD(params, lr=lr)


@pytest.mark.slow
def test_checkpointing_and_token_budget_give_the_same_gradients(assets, monkeypatch):
    # Adam's first step is ~lr * sign(g), which would turn float noise in a near-zero gradient
    # into a visible difference; SGD keeps the comparison about the gradient itself.
    monkeypatch.setattr(torch.optim, "AdamW", _sgd)
    start = load_file(assets[1] / "model.safetensors")
    base_m, base_w = run_one_step(assets, "base")
    assert base_m["optim/grad_norm"] > 0
    grad = {k: start[k] - base_w[k] for k in start}
    for name, kw in [("ckpt", {"memory": {"gradient_checkpointing": True}}),
                     ("budget", {"optimizer": {"max_tokens_per_micro_batch": 40}})]:
        m, w = run_one_step(assets, name, **kw)
        assert m["optim/grad_norm"] == pytest.approx(base_m["optim/grad_norm"], rel=1e-5), name
        assert m["loss/policy"] == pytest.approx(base_m["loss/policy"], rel=1e-5, abs=1e-7), name
        for k in start:
            torch.testing.assert_close(start[k] - w[k], grad[k], atol=1e-6, rtol=1e-4,
                                       msg=f"{name} {k}")


@pytest.mark.slow
def test_token_budget_keeps_the_kl_in_the_reward_on_its_own_sequence(assets, monkeypatch):
    """The budget sorts sequences; each one's KL penalty must still reach its own advantage. At
    step 1 the policy is the reference (no penalty), so compare after step 2."""
    monkeypatch.setattr(torch.optim, "AdamW", _sgd)
    kl = {"loss": {"kl_coef": 0.5, "kl_in": "reward"}, "steps": 2}
    base_m, base_w = run_one_step(assets, "kl-base", optimizer={"lr": 0.1}, **kl)
    m, w = run_one_step(assets, "kl-budget", optimizer={"lr": 0.1, "max_tokens_per_micro_batch": 40},
                        **kl)
    assert base_m["kl/mean"] != 0  # the penalty is live at step 2
    assert m["optim/grad_norm"] == pytest.approx(base_m["optim/grad_norm"], rel=1e-5)
    for k in base_w:
        torch.testing.assert_close(w[k], base_w[k], atol=1e-6, rtol=1e-4, msg=k)


def test_a_job_over_the_memory_limit_is_refused_before_loading(assets, tmp_path):
    root, model, data = assets
    config = TrainConfig(model=str(model), dataset=str(data), reward="exact", batch_size=4,
                         n0=0, reward_workers=0, run_dir=str(tmp_path),
                         memory={"max_device_memory_gb": 1e-4})
    with pytest.raises(ConfigError, match=r"memory.max_device_memory_gb: the job needs about"):
        train(config, JsonlSink(tmp_path / "m.jsonl"), run_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()


QWEN_05B = ModelShape(params=494_032_768, lora_params=8_798_208, hidden=896, intermediate=4864,
                      layers=24, vocab=151_936, kv_dim=128, embed_params=136_134_528)


def test_estimate_responds_to_each_memory_feature():
    base = estimate_memory(QWEN_05B, max_seq=1024, micro_batch_size=8)
    ckpt = estimate_memory(QWEN_05B, max_seq=1024, micro_batch_size=8, gradient_checkpointing=True)
    budget = estimate_memory(QWEN_05B, max_seq=1024, max_tokens_per_micro_batch=2048)
    lora = estimate_memory(QWEN_05B, max_seq=1024, micro_batch_size=8, lora=True)
    two = estimate_memory(QWEN_05B, max_seq=1024, micro_batch_size=8, world=2)
    ref = estimate_memory(QWEN_05B, max_seq=1024, micro_batch_size=8, reference="resident")
    off = estimate_memory(QWEN_05B, max_seq=1024, micro_batch_size=8, reference="offloaded")
    assert ckpt.terms["activations"] < base.terms["activations"] / 5
    assert budget.terms["activations"] == base.terms["activations"] / 4  # 2048 vs 8 x 1024 tokens
    assert lora.terms["optimizer"] < base.terms["optimizer"] / 50
    assert two.terms["optimizer"] == base.terms["optimizer"] / 2
    assert two.terms["gathered_unit"] > 0 == base.terms["gathered_unit"]
    # fp32 weights (4) + fp32 gradients (4) + AdamW's two fp32 moments (8) per parameter
    resident = base.terms["weights"] + base.terms["optimizer"] + base.terms["gradients"]
    assert resident == pytest.approx(16 * QWEN_05B.params)
    assert off.peak < ref.peak and off.terms["reference"] == ref.terms["reference"]


@pytest.mark.parametrize(("dtype", "frozen"), [("bfloat16", torch.bfloat16),
                                               ("float32", torch.float32)])
def test_lora_stores_the_frozen_base_in_the_compute_dtype_and_trains_fp32(assets, dtype, frozen):
    from trainer.modeling import load_model

    root, model_dir, data = assets
    config = TrainConfig(model=str(model_dir), dataset=str(data), reward="exact", device="cpu",
                         dtype=dtype, lora={"r": 4}, run_dir=str(root / "lora"))
    model, _, _ = load_model(config, torch.device("cpu"))
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {frozen}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
