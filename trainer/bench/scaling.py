"""What fits where, from trainer.memory's model: per-GPU peak for Qwen2 0.5B / 1.5B / 7B.

    python -m trainer.bench scaling [--gpu-gb 80] [--max-seq 2048] [--budget 16384]
        [--rollout-batch 64] [--json]

No weights are read: the three models are built on the meta device from their published configs
(Qwen2-0.5B, -1.5B, -7B: hidden, layers, heads, vocab as on the hub), so parameter counts are
exact. For each model, full fine-tune and LoRA (r 16, all linear layers), and 1, 2, 4, 8 GPUs
(FSDP2 shards weights, gradients and AdamW state over them), the peak of a step (rollout with the
hf engine, reference pass, update) in GiB per GPU, bf16 compute, fp32 master weights and
optimizer state, `--max-seq` tokens per sequence, a token budget of `--budget` per micro-batch,
with and without gradient checkpointing, no KL reference. Prints a markdown table
(docs/scaling.md) or, with --json, the figures.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

QWEN2 = {
    "Qwen2-0.5B": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                       tie_word_embeddings=True),
    "Qwen2-1.5B": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                       tie_word_embeddings=True),
    "Qwen2-7B": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                     tie_word_embeddings=False),
}
GPUS = (1, 2, 4, 8)


def table(args: argparse.Namespace) -> list[dict[str, Any]]:
    from transformers import Qwen2Config

    from trainer.config import LoraConfig
    from trainer.memory import GiB, estimate_memory, model_shape

    rows = []
    for name, fields in QWEN2.items():
        shape = model_shape(Qwen2Config(**fields), LoraConfig())
        for lora in (False, True):
            for gpus in GPUS:
                peaks = {}
                for ckpt in (False, True):
                    est = estimate_memory(shape, world=gpus, max_seq=args.max_seq,
                                          max_tokens_per_micro_batch=args.budget,
                                          rollout_batch=args.rollout_batch, compute_bytes=2,
                                          gradient_checkpointing=ckpt, lora=lora)
                    peaks["checkpointing" if ckpt else "plain"] = round(est.peak / GiB, 1)
                rows.append({"model": name, "params_b": round(shape.params / 1e9, 2),
                             "mode": "LoRA" if lora else "full", "gpus": gpus, **peaks})
    return rows


def _cell(row: dict[str, Any], gpu_gb: float) -> str:
    def mark(gb: float) -> str:
        return f"{gb:.0f}" + ("" if gb <= gpu_gb else " ✗")

    return f"{mark(row['plain'])} / {mark(row['checkpointing'])}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.bench scaling", description=__doc__)
    p.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU (GiB)")
    p.add_argument("--max-seq", type=int, default=2048, help="prompt + response tokens")
    p.add_argument("--budget", type=int, default=8192, help="tokens per micro-batch")
    p.add_argument("--rollout-batch", type=int, default=64, help="sequences per generate chunk")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = table(args)
    if args.json:
        print(json.dumps({"settings": vars(args), "rows": rows}))
        return 0
    print(f"Peak GiB per GPU, without / with gradient checkpointing (✗ = over {args.gpu_gb:g} GiB)\n")
    print("| model | mode | " + " | ".join(f"{g} GPU" for g in GPUS) + " |")
    print("|---|---|" + "---|" * len(GPUS))
    for i in range(0, len(rows), len(GPUS)):
        group = rows[i:i + len(GPUS)]
        head = group[0]
        print(f"| {head['model']} ({head['params_b']}B) | {head['mode']} | "
              + " | ".join(_cell(r, args.gpu_gb) for r in group) + " |")
    return 0
