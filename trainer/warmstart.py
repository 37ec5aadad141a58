"""Supervised warm start of the tiny model on the arithmetic task, so RL starts from partial skill.

Choices:
- Teacher forcing on `<bos> prompt answer <eos>` with the loss on the answer and `<eos>` only: the
  model learns to answer and to stop, never to produce prompts.
- A two-phase curriculum (`default_rows`): the first third of the steps shows only single-digit
  sums, the rest mixes the demo levels (WARM_WEIGHTS). Without the first phase the sum table, which
  every other level builds on, is learned several times slower when mixed with harder problems.
- Deliberately short: it stops at the first check where greedy accuracy on a validation set
  reaches DEFAULT_TARGET (0.3), or after DEFAULT_STEPS. Stopping on a measured target rather than
  a fixed step count keeps the result in range although the step at which the tiny model "gets"
  carrying varies by hundreds of steps between seeds (0.10-0.33 at a fixed 1200 steps). There
  single-digit sums are solved, two-digit-and-one-digit sums and differences partly, two-digit
  sums hardly, and per-prompt sampled success rates spread over (0, 1); the learning curve is
  still steep, so RL has room to climb. Figures: docs/benchmarks.md.
- Problems are drawn with repeats from the whole problem space, so the warm start may have seen a
  demo eval problem ("held out" means held out from RL); `python -m trainer.warmstart
  --exclude-eval` is the control that never does (docs/benchmarks.md: somewhat lower, so part of
  the skill is recall).
- Deterministic under `seed` for a fixed thread count (`threads`, default 1 so the figure does not
  depend on the machine's core count and the run leaves the other core free).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer.tasks import DEFAULT_LEVELS, generate_arithmetic, sample_arithmetic

DEFAULT_STEPS = 2400           # the most steps; the target usually stops it near 1000-1500
DEFAULT_TARGET = 0.3           # stop once greedy validation accuracy reaches this
DEFAULT_BATCH = 64
DEFAULT_LR = 3e-3
TABLE_STEPS = 400              # first phase: single-digit sums only (curriculum); <= steps / 3
WARM_WEIGHTS = (3.0, 3.0, 3.0, 1.0)  # then this mix over DEFAULT_LEVELS
CHECK_EVERY = 100              # steps between validation checks once the table phase is over
VALIDATION_ROWS = 300
WARM_SEED_OFFSET = 1_000_003
VALIDATION_SEED = 2_000_003


def recipe(*, steps: int | None = None, target_accuracy: float | None = DEFAULT_TARGET,
           batch_size: int = DEFAULT_BATCH, lr: float = DEFAULT_LR) -> dict[str, Any]:
    """The settings that decide a default warm start's result (for the demo model's marker)."""
    return {"max_steps": DEFAULT_STEPS if steps is None else steps,
            "target_accuracy": target_accuracy, "batch_size": batch_size, "lr": lr,
            "table_steps": TABLE_STEPS, "weights": list(WARM_WEIGHTS),
            "levels": list(DEFAULT_LEVELS), "check_every": CHECK_EVERY,
            "validation": [VALIDATION_ROWS, VALIDATION_SEED], "seed_offset": WARM_SEED_OFFSET}


def default_validation() -> list[dict]:
    """VALIDATION_ROWS problems in the proportions of a default-sized demo dataset (2000 rows, of
    which single-digit sums are only the 100 that exist), so its accuracy tracks the demo's."""
    return generate_arithmetic(2000, VALIDATION_SEED)[:VALIDATION_ROWS]


def table_steps(steps: int) -> int:
    """Length of the single-digit phase of a default run of at most `steps` steps."""
    return min(TABLE_STEPS, steps // 3)


def default_rows(steps: int, batch_size: int, seed: int,
                 exclude: Collection[str] = frozenset()) -> list[dict]:
    """The default warm-start stream, one row per training example in order: a table phase of
    single-digit sums, then the demo levels mixed by WARM_WEIGHTS (drawn with repeats).
    `exclude`: prompts never to show (a control for how much the result is memorisation)."""
    table = table_steps(steps) * batch_size
    rest = steps * batch_size - table
    stream = []
    for count, levels, weights, offset in ((table, [DEFAULT_LEVELS[0]], None, 0),
                                            (rest, DEFAULT_LEVELS, WARM_WEIGHTS, 1)):
        drawn = sample_arithmetic(count + count // 2 if exclude else count,
                                  seed + WARM_SEED_OFFSET + offset, levels=levels, weights=weights)
        kept = [row for row in drawn if row["prompt"] not in exclude][:count]
        if len(kept) < count:
            raise ValueError("`exclude` removes too much of the warm-start stream")
        stream.extend(kept)
    return stream


@dataclass
class WarmStartReport:
    """What a warm start did; saved into the demo model's `demo.json`."""

    steps: int                 # steps taken (fewer than asked when the target stopped it)
    seconds: float
    loss_first: float
    loss_last: float
    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, greedy accuracy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch(rows: Sequence[dict], tokenizer, cache: dict[str, list[int]] | None = None):
    """(input_ids, labels, attention_mask), each (B, T), right-padded; labels -100 off the answer.
    `cache` memoises encodings (the same few thousand strings recur every epoch)."""
    import torch

    cache = {} if cache is None else cache

    def encode(text: str, special: bool) -> list[int]:
        key = ("\x00" if special else "\x01") + text
        if key not in cache:
            cache[key] = tokenizer(text, add_special_tokens=special)["input_ids"]
        return cache[key]

    seqs, labels = [], []
    for row in rows:
        prompt = encode(row["prompt"], True)
        answer = [*encode(str(row["answer"]), False), tokenizer.eos_token_id]
        seqs.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    lab = torch.full((len(seqs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (seq, target) in enumerate(zip(seqs, labels, strict=True)):
        ids[i, :len(seq)] = torch.tensor(seq)
        lab[i, :len(target)] = torch.tensor(target)
        mask[i, :len(seq)] = 1
    return ids, lab, mask


def _batches(rows: Sequence[dict] | None, steps: int, batch_size: int, seed: int,
             exclude: Collection[str] = frozenset()):
    """Yield `steps` lists of rows: the default stream in order, or given rows reshuffled per epoch."""
    import torch

    if rows is None:
        stream = default_rows(steps, batch_size, seed, exclude)
        for step in range(steps):
            yield stream[step * batch_size:(step + 1) * batch_size]
        return
    if len(rows) < batch_size:
        raise ValueError(f"need at least batch_size={batch_size} rows, got {len(rows)}")
    generator = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(len(rows), generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > len(rows):
            order, cursor = torch.randperm(len(rows), generator=generator), 0
        yield [rows[i] for i in order[cursor:cursor + batch_size].tolist()]
        cursor += batch_size


def warm_start(model_dir: str | os.PathLike, *, rows: Sequence[dict] | None = None,
               steps: int | None = None, target_accuracy: float | None = DEFAULT_TARGET,
               batch_size: int = DEFAULT_BATCH, lr: float = DEFAULT_LR, seed: int = 0,
               threads: int | None = None, exclude: Collection[str] = frozenset(),
               validation: Sequence[dict] | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> WarmStartReport:
    """Fine-tune the model in `model_dir` in place; returns what it did.

    rows: dicts with "prompt" (text) and "answer", reshuffled every epoch; default: the arithmetic
    curriculum of `default_rows`. steps: the most AdamW steps, at constant `lr` (default
    DEFAULT_STEPS). target_accuracy: stop at the first check (every CHECK_EVERY steps, after the
    table phase) where greedy exact-match accuracy on `validation` (default: VALIDATION_ROWS
    arithmetic problems) reaches it; None trains all `steps`. Stopping on a measured target rather
    than a step count keeps the result in range although the step at which the tiny model "gets"
    carrying varies by a few hundred steps from seed to seed. threads: torch CPU threads for the
    run (default 1), restored afterwards. exclude: prompts the default stream must not contain.
    progress: called after every step as `progress(step, steps, detail)` (detail: ", loss 1.23,
    validation 0.21 at step 500"); it draws nothing, so the weights are those of a silent run.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = DEFAULT_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model_dir = Path(model_dir)
    check_rows: Sequence[dict] = (validation if validation is not None else
                                  default_validation() if target_accuracy is not None else ())
    first_check = table_steps(steps) if rows is None else 0
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01,
                                      betas=(0.9, 0.98))
        cache: dict[str, list[int]] = {}
        losses: list[float] = []
        checks: list[tuple[int, float]] = []
        start = time.perf_counter()
        batches = _batches(None if rows is None else list(rows), steps, batch_size, seed, exclude)
        for step, batch in enumerate(batches, start=1):
            model.train()
            ids, labels, mask = _batch(batch, tokenizer, cache)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            if target_accuracy is not None and step >= first_check and step % CHECK_EVERY == 0:
                checks.append((step, _exact_accuracy(model, tokenizer, check_rows)))
                if checks[-1][1] >= target_accuracy:
                    break
            if progress is not None:
                checked = (f", validation {checks[-1][1]:.2f} at step {checks[-1][0]} (stops at "
                           f"{target_accuracy})" if checks else "")
                progress(step, steps, f", loss {losses[-1]:.3f}{checked}")
        seconds = time.perf_counter() - start
        model.save_pretrained(model_dir, safe_serialization=True)
    finally:
        torch.set_num_threads(previous_threads)
    return WarmStartReport(steps=len(losses), seconds=round(seconds, 3), loss_first=losses[0],
                           loss_last=losses[-1], losses=[round(x, 5) for x in losses],
                           validation=[(s, round(a, 4)) for s, a in checks])


def _exact_accuracy(model, tokenizer, rows: Sequence[dict]) -> float:
    answers = greedy_answers(model, tokenizer, [r["prompt"] for r in rows])
    return sum(a.strip() == str(r["answer"]).strip() for a, r in zip(answers, rows, strict=True)
               ) / len(rows)


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


def sampled_success(model_dir: str | os.PathLike, rows: Sequence[dict], *, samples: int = 8,
                    max_new_tokens: int = 6, seed: int = 0) -> list[float]:
    """Per-prompt success rate over `samples` temperature-1 completions (exact match)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    torch.manual_seed(seed)
    rates = []
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([tokenizer(row["prompt"])["input_ids"]])
            out = model.generate(input_ids=ids, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 num_return_sequences=samples, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
            texts = tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
            rates.append(sum(t.strip() == str(row["answer"]) for t in texts) / samples)
    return rates


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m trainer.warmstart OUT_DIR [--steps N] [--seed S] [--threads T]`: build the demo
    model shape, warm-start it, print one JSON line: time, greedy accuracy on the demo eval split
    (the held-out 10% of the default 2000-row dataset, as `python -m trainer demo` splits it) and
    by difficulty on 1000 more problems, and the spread of per-prompt sampled success rates."""
    import argparse
    import json

    import numpy as np

    from trainer.data import Row, split
    from trainer.tiny import DEMO_SHAPE, build_tiny_model

    parser = argparse.ArgumentParser(prog="python -m trainer.warmstart")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="the most steps")
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET,
                        help="validation accuracy that ends the run; <= 0 trains every step")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--exclude-eval", action="store_true",
                        help="control run: never train on the eval problems above the sum table")
    args = parser.parse_args(argv)
    demo = generate_arithmetic(2000, seed=0)
    by_id = {r["id"]: r for r in demo}
    _, held = split([Row(id=r["id"], prompt=r["prompt"], answer=r["answer"]) for r in demo], 0.1,
                    seed=0)
    eval_rows = [by_id[r.id] for r in held]
    exclude = {r["prompt"] for r in eval_rows if r["difficulty"] > 0} if args.exclude_eval else ()
    build_tiny_model(args.out_dir, seed=args.seed, **DEMO_SHAPE)
    report = warm_start(args.out_dir, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        seed=args.seed, threads=args.threads, exclude=frozenset(exclude),
                        target_accuracy=args.target if args.target > 0 else None)
    start = time.perf_counter()
    demo_eval = accuracy_by_difficulty(args.out_dir, eval_rows, threads=args.threads)
    wide = accuracy_by_difficulty(args.out_dir, generate_arithmetic(1000, seed=12345),
                                  threads=args.threads)
    rates = np.asarray(sampled_success(args.out_dir, eval_rows))
    print(json.dumps({
        "steps": report.steps, "seconds": report.seconds, "threads": args.threads,
        "excluded_eval_prompts": len(exclude), "validation": report.validation,
        "loss_first": round(report.loss_first, 4), "loss_last": round(report.loss_last, 4),
        "demo_eval_greedy": {k: round(v, 3) for k, v in demo_eval.items()},
        "by_difficulty_greedy_1000": {k: round(v, 3) for k, v in wide.items()},
        "demo_eval_sampled_mean": round(float(rates.mean()), 3),
        "demo_eval_sampled_rate_histogram": {
            "0": int((rates == 0).sum()), "(0,0.5)": int(((rates > 0) & (rates < 0.5)).sum()),
            "[0.5,1)": int(((rates >= 0.5) & (rates < 1)).sum()), "1": int((rates == 1).sum())},
        "eval_seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
