"""Peak memory of one update (forward + backward over a batch) with and without the memory features.

    python -m trainer.bench memory [--hidden 256] [--layers 8] [--heads 4] [--vocab 8192]
        [--seqs 32] [--seq-len 384] [--budget 3072] [--threads 1] [--smoke] [--json]

Each variant runs in its own process (a process's peak RSS only grows), on a Qwen2-shaped model
built from a config with random weights (no download) and a synthetic batch: `--seqs` sequences
of random length in [seq-len/4, seq-len] (seed 0), the first quarter of each the prompt, random
advantages, token-mean PPO loss (trainer.loss) as the loop computes it. Figures per variant:
`peak_mb` = peak RSS during the update minus RSS just before it (the update's own memory: the
gradients, plus activations and logits of the largest micro-batch), and `estimate_mb`, what
trainer.memory's model predicts for the same terms in fp32. Variants:
- `one_pass`: the whole batch in one forward/backward (micro_batch_size = seqs);
- `micro_batch_8`: fixed chunks of 8 sequences (the loop's default micro_batch_size);
- `token_budget`: `optimizer.max_tokens_per_micro_batch = --budget` (sorted, packed);
- `checkpointing`: chunks of 8 with gradient checkpointing;
- `checkpointing_budget`: both.
CPU RSS includes allocator slack, so compare variants with each other, not to the byte.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any

VARIANTS = {
    "one_pass": {"micro_batch_size": None},
    "micro_batch_8": {"micro_batch_size": 8},
    "token_budget": {"budget": True},
    "checkpointing": {"micro_batch_size": 8, "checkpointing": True},
    "checkpointing_budget": {"budget": True, "checkpointing": True},
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _run_variant(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """In this process: build, measure one update, return the figures."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from trainer.loss import policy_loss, token_logprobs
    from trainer.memory import (
        enable_gradient_checkpointing,
        estimate_memory,
        model_shape,
        plan_micro_batches,
    )

    v = VARIANTS[name]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, vocab_size=args.vocab,
                         max_position_embeddings=args.seq_len, tie_word_embeddings=True)
    model = AutoModelForCausalLM.from_config(config)
    model.config.use_cache = False
    if v.get("checkpointing"):
        enable_gradient_checkpointing(model)
    model.train()
    rng = np.random.default_rng(0)
    lengths = rng.integers(args.seq_len // 4, args.seq_len + 1, size=args.seqs).tolist()
    seqs = [torch.from_numpy(rng.integers(0, args.vocab, size=n)) for n in lengths]
    advantages = torch.from_numpy(rng.standard_normal(args.seqs)).float()
    budget = args.budget if v.get("budget") else None
    plan = plan_micro_batches(lengths, v.get("micro_batch_size") or args.seqs, budget)
    total_tokens = float(sum(n - n // 4 for n in lengths))
    before = _rss_mb()
    for part in plan:
        width = max(lengths[i] for i in part)
        ids = torch.zeros(len(part), width, dtype=torch.long)
        attention = torch.zeros(len(part), width, dtype=torch.long)
        mask = torch.zeros(len(part), width - 1)
        for row, i in enumerate(part):
            ids[row, :lengths[i]] = seqs[i]
            attention[row, :lengths[i]] = 1
            mask[row, lengths[i] // 4 - 1:lengths[i] - 1] = 1.0
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        lp = token_logprobs(logits, ids[:, 1:])
        loss, _ = policy_loss(lp, lp.detach(), advantages[part], mask, total_tokens=total_tokens)
        loss.backward()
        del logits, lp, loss
    peak = _peak_mb() - before
    largest = max(len(p) * max(lengths[i] for i in p) for p in plan)
    est = estimate_memory(model_shape(config), max_seq=args.seq_len,
                          max_tokens_per_micro_batch=largest, compute_bytes=4,
                          gradient_checkpointing=bool(v.get("checkpointing")))
    predicted = est.terms["gradients"] + est.terms["activations"] + est.terms["logits"]
    return {"variant": name, "peak_mb": round(peak, 1), "estimate_mb": round(predicted / 2**20, 1),
            "micro_batches": len(plan), "largest_micro_batch_tokens": largest,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m trainer.bench memory", description=__doc__)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seqs", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=384)
    p.add_argument("--budget", type=int, default=3072, help="tokens per micro-batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a small model and batch (tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    return p


def _apply_smoke(args: argparse.Namespace) -> None:
    if args.smoke:
        args.hidden, args.layers, args.vocab, args.seqs, args.seq_len, args.budget = (
            64, 2, 512, 8, 64, 256)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _apply_smoke(args)
    if args.variant:  # child: one variant, one JSON line
        print(json.dumps(_run_variant(args, args.variant)))
        return 0
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    rows = []
    for name in VARIANTS:
        out = subprocess.run([sys.executable, "-m", "trainer.bench", "memory", *passthrough,
                              "--variant", name], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.json:
        print(json.dumps({"config": {k: getattr(args, k) for k in (
            "hidden", "layers", "heads", "vocab", "seqs", "seq_len", "budget", "threads")},
            "variants": rows}))
    else:
        print(f"{'variant':22} {'peak MB':>9} {'estimate MB':>12} {'micro-batches':>14}")
        for r in rows:
            print(f"{r['variant']:22} {r['peak_mb']:9.1f} {r['estimate_mb']:12.1f} "
                  f"{r['micro_batches']:14d}")
    return 0
