"""Supervised warm start of the tiny model on the arithmetic task, so RL starts from partial skill.

Choices:
- Teacher forcing on `<bos> prompt answer <eos>` with the loss on the answer and `<eos>` only: the
  model learns to answer and to stop, never to produce prompts.
- Deliberately short (a fixed number of AdamW steps, `DEFAULT_STEPS`): the target is held-out
  accuracy of about 0.2-0.45 with easy levels mostly right and hard ones mostly wrong, leaving RL
  the middle of the difficulty ladder to improve on. Figures are in docs/benchmarks.md.
- Its training rows are drawn with a seed apart from the demo dataset's (`WARM_SEED_OFFSET`), so
  the mix of problems differs; the small levels (100 single-digit sums) overlap anyway.
- Deterministic under `seed` for a fixed thread count (`threads`, default 1 so the figure does not
  depend on the machine's core count and the run leaves the other core free).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.tasks import generate_arithmetic

DEFAULT_STEPS = 300
DEFAULT_BATCH = 64
DEFAULT_LR = 3e-3
WARM_ROWS = 6000
WARM_SEED_OFFSET = 1_000_003


def recipe(*, steps: int | None = None, batch_size: int = DEFAULT_BATCH,
           lr: float = DEFAULT_LR) -> dict[str, Any]:
    """The settings that decide a default warm start's result (for the demo model's marker)."""
    return {"steps": DEFAULT_STEPS if steps is None else steps, "batch_size": batch_size,
            "lr": lr, "rows": WARM_ROWS, "seed_offset": WARM_SEED_OFFSET}


@dataclass
class WarmStartReport:
    """What a warm start did; saved into the demo model's `demo.json`."""

    steps: int
    seconds: float
    loss_first: float
    loss_last: float
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch(rows: Sequence[dict], tokenizer, device="cpu"):
    """(input_ids, labels, attention_mask), each (B, T), right-padded; labels -100 off the answer."""
    import torch

    seqs, labels = [], []
    for row in rows:
        prompt = tokenizer(row["prompt"])["input_ids"]
        answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        answer = [*answer, tokenizer.eos_token_id]
        seqs.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    lab = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, y) in enumerate(zip(seqs, labels, strict=True)):
        ids[i, :len(s)] = torch.tensor(s)
        lab[i, :len(y)] = torch.tensor(y)
        mask[i, :len(s)] = 1
    return ids.to(device), lab.to(device), mask.to(device)


def warm_start(model_dir: str | os.PathLike, *, rows: Sequence[dict] | None = None,
               steps: int | None = None, batch_size: int = DEFAULT_BATCH, lr: float = DEFAULT_LR,
               seed: int = 0, threads: int | None = None) -> WarmStartReport:
    """Fine-tune the model in `model_dir` in place on (prompt, answer) rows (default: arithmetic).

    rows: dicts with "prompt" (text) and "answer"; steps: AdamW steps (default DEFAULT_STEPS),
    each on `batch_size` rows drawn without replacement per epoch; lr decays linearly to 10%.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = DEFAULT_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model_dir = Path(model_dir)
    rows = list(rows) if rows is not None else generate_arithmetic(WARM_ROWS, seed + WARM_SEED_OFFSET)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01,
                                      betas=(0.9, 0.98))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 1.0 - 0.9 * min(s, steps) / steps)
        order, cursor, losses = torch.randperm(len(rows), generator=generator), 0, []
        start = time.perf_counter()
        for _ in range(steps):
            if cursor + batch_size > len(rows):
                order, cursor = torch.randperm(len(rows), generator=generator), 0
            batch = [rows[i] for i in order[cursor:cursor + batch_size].tolist()]
            cursor += batch_size
            ids, labels, mask = _batch(batch, tokenizer)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start
        model.save_pretrained(model_dir, safe_serialization=True)
    finally:
        torch.set_num_threads(previous_threads)
    return WarmStartReport(steps=steps, seconds=round(seconds, 3), loss_first=losses[0],
                           loss_last=losses[-1], losses=[round(x, 5) for x in losses])


def greedy_answers(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 8,
                   batch_size: int = 256) -> list[str]:
    """Greedy completions (special tokens removed) for text prompts, batched with left padding."""
    import torch

    out: list[str] = []
    eos = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            encoded = [tokenizer(p)["input_ids"] for p in prompts[start:start + batch_size]]
            width = max(map(len, encoded))
            ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(e)) + e for e in encoded])
            mask = (torch.arange(width)[None, :] >= torch.tensor(
                [width - len(e) for e in encoded])[:, None]).long()
            generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                       max_new_tokens=max_new_tokens,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=list(eos))
            for row in generated[:, width:].tolist():
                cut = next((i for i, t in enumerate(row) if t in eos), len(row))
                out.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    return out


def accuracy_by_difficulty(model_dir: str | os.PathLike, rows: Sequence[dict], *,
                           threads: int | None = None) -> dict[str, float]:
    """Greedy exact-match accuracy on arithmetic rows: {"all": .., "<difficulty>": ..}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        answers = greedy_answers(model, tokenizer, [r["prompt"] for r in rows])
    finally:
        torch.set_num_threads(previous)
    hits: dict[str, list[bool]] = defaultdict(list)
    for row, got in zip(rows, answers, strict=True):
        ok = got.strip() == str(row["answer"]).strip()
        hits["all"].append(ok)
        hits[str(row.get("difficulty", "?"))].append(ok)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m trainer.warmstart OUT_DIR [--steps N] [--seed S] [--threads T]`: build the tiny
    model, warm-start it, print one JSON line with time and greedy accuracy by difficulty on a
    held-out arithmetic set (the benchmark behind docs/benchmarks.md)."""
    import argparse
    import json

    from trainer.tiny import build_tiny_model

    parser = argparse.ArgumentParser(prog="python -m trainer.warmstart")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-rows", type=int, default=1000)
    args = parser.parse_args(argv)
    build_tiny_model(args.out_dir, seed=args.seed)
    report = warm_start(args.out_dir, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, threads=args.threads)
    held_out = generate_arithmetic(args.eval_rows, seed=args.seed)
    start = time.perf_counter()
    accuracy = accuracy_by_difficulty(args.out_dir, held_out, threads=args.threads)
    print(json.dumps({"steps": report.steps, "seconds": report.seconds,
                      "loss_first": round(report.loss_first, 4),
                      "loss_last": round(report.loss_last, 4),
                      "eval_seconds": round(time.perf_counter() - start, 2),
                      "accuracy": {k: round(v, 3) for k, v in accuracy.items()}}))


if __name__ == "__main__":
    main()
