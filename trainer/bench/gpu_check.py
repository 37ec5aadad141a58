"""One GPU check, sized for one H200 (139 GiB, 16 cores; torch + transformers + peft, no vLLM, no
downloads): prints one JSON object. `scripts/gpu_check.sh` runs it; record the output in
docs/benchmarks.md.

    python -m trainer.bench gpu-check [--smoke] [--skip-demo] [--out DIR]

Parts (each timed on the GPU, bf16 autocast over fp32 master weights as the loop runs):
1. `rollout`: the hf engine (trainer.rollout.hf) on a Qwen2-0.5B-shaped model built from its
   config with random weights: 64 prompts x 4 rollouts, 256 new tokens, temperature 1; tokens/s
   over generated tokens (one warm-up call first).
2. `update`: forward + backward + AdamW step over 64 sequences of 512-1024 tokens (prompt 256),
   token budget 16384 per micro-batch, with and without gradient checkpointing: tokens/s and
   peak allocated GiB, next to trainer.memory's estimate of the same update.
3. `demo`: one short BASIS job end to end on the tiny demo (trainer.cli's demo model and
   arithmetic data, built here on first use) with `device: cuda`: steps, seconds, accuracies.
`--smoke` shrinks everything to a tiny model on whatever device is present (the test runs it on
CPU to keep this script working without a GPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                 tie_word_embeddings=True, max_position_embeddings=4096)
SMOKE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True,
             max_position_embeddings=512)


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model(fields: dict[str, Any]):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**fields), dtype=torch.float32)
    model.generation_config.eos_token_id = None  # random weights: sample the full length
    return model.to(_device())


class _Tok:
    """The hf engine's tokenizer needs: pad/eos ids and decode (random weights: ids are enough)."""

    pad_token_id = 0
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True) -> str:
        return ""


def rollout(fields: dict[str, Any], prompts: int, n: int, new_tokens: int) -> dict[str, Any]:
    import torch

    from trainer.rollout import EngineConfig, SamplingParams, get_engine

    model = _model(fields)
    bf16 = torch.bfloat16 if _device().type == "cuda" else None
    engine = get_engine("hf", model, _Tok(), EngineConfig(
        model="", engine_options={"max_batch_size": prompts * n}, seed=0, autocast_dtype=bf16))
    gen = torch.Generator().manual_seed(0)
    batch = [torch.randint(1, fields["vocab_size"], (64,), generator=gen).tolist()
             for _ in range(prompts)]
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens, seed=0)
    engine.generate(batch[:2], 1, params)  # warm-up
    _sync()
    t = time.perf_counter()
    out = engine.generate(batch, n, params)
    _sync()
    seconds = time.perf_counter() - t
    tokens = sum(len(r.response_ids) for r in out)
    return {"sequences": len(out), "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1)}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def update(fields: dict[str, Any], seqs: int, prompt: int, max_len: int, budget: int,
           checkpointing: bool) -> dict[str, Any]:
    import numpy as np
    import torch
    from transformers import Qwen2Config

    from trainer.loss import policy_loss, token_logprobs
    from trainer.memory import (
        GiB,
        enable_gradient_checkpointing,
        estimate_memory,
        model_shape,
        plan_micro_batches,
    )

    device = _device()
    model = _model(fields)
    model.config.use_cache = False
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    rng = np.random.default_rng(0)
    lengths = rng.integers(prompt * 2, max_len + 1, size=seqs).tolist()
    plan = plan_micro_batches(lengths, seqs, budget)
    total = float(sum(n - prompt for n in lengths))
    adv = torch.from_numpy(rng.standard_normal(seqs)).float()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync()
    t = time.perf_counter()
    for part in plan:
        width = max(lengths[i] for i in part)
        ids = torch.randint(1, fields["vocab_size"], (len(part), width), device=device)
        attention = torch.zeros(len(part), width, dtype=torch.long, device=device)
        mask = torch.zeros(len(part), width - 1, device=device)
        for row, i in enumerate(part):
            attention[row, :lengths[i]] = 1
            mask[row, prompt - 1:lengths[i] - 1] = 1.0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        lp = token_logprobs(logits, ids[:, 1:])
        loss, _ = policy_loss(lp, lp.detach(), adv[part].to(device), mask, total_tokens=total)
        loss.backward()
        del logits, lp, loss
    opt.step()
    _sync()
    seconds = time.perf_counter() - t
    tokens = sum(lengths)
    peak = torch.cuda.max_memory_allocated() / GiB if device.type == "cuda" else None
    largest = max(len(p) * max(lengths[i] for i in p) for p in plan)
    est = estimate_memory(model_shape(Qwen2Config(**fields)), max_seq=max_len,
                          max_tokens_per_micro_batch=largest, rollout_batch=0,
                          compute_bytes=2 if device.type == "cuda" else 4,
                          gradient_checkpointing=checkpointing)
    return {"gradient_checkpointing": checkpointing, "tokens": tokens,
            "micro_batches": len(plan), "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1),
            "peak_allocated_gib": None if peak is None else round(peak, 2),
            "estimate_gib": round(est.phases["update"] / GiB, 2)}


def demo(out: Path, steps: int) -> dict[str, Any]:
    import torch

    from trainer.cli import demo_config, prepare_demo
    from trainer.loop import train
    from trainer.sinks import JsonlSink

    cache = out / "cache"
    model, data = prepare_demo(cache)
    config = demo_config(model, data, out / "run", cache, max_steps=steps,
                         device="cuda" if torch.cuda.is_available() else "cpu", cpu_threads=None,
                         eval_every=steps, probe_every=0)
    sink = JsonlSink(out / "run" / "metrics.jsonl")
    t = time.perf_counter()
    try:
        result = train(config, sink, run_dir=out / "run", resume=False)
    finally:
        sink.close()
    return {"steps": result.steps, "seconds": round(time.perf_counter() - t, 1),
            "initial_eval_accuracy": result.initial_eval_accuracy,
            "final_eval_accuracy": result.final_eval_accuracy, "device": config.device}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.bench gpu-check", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, any device (tests)")
    p.add_argument("--skip-demo", action="store_true", help="leave out the end-to-end demo job")
    p.add_argument("--demo-steps", type=int, default=30)
    p.add_argument("--out", default=None, help="work directory (default: a temp dir)")
    args = p.parse_args(argv)
    import torch

    fields = SMOKE if args.smoke else QWEN2_05B
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "model": "smoke" if args.smoke else "Qwen2-0.5B shape, random",
    }
    sizes = (4, 2, 8) if args.smoke else (64, 4, 256)
    report["rollout"] = rollout(fields, *sizes)
    upd = (8, 16, 64, 256) if args.smoke else (64, 256, 1024, 16384)
    report["update"] = [update(fields, *upd, checkpointing=c) for c in (False, True)]
    if not args.skip_demo:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(args.out) if args.out else Path(tmp)
            report["demo"] = demo(out, 3 if args.smoke else args.demo_steps)
    print(json.dumps(report))
    return 0
