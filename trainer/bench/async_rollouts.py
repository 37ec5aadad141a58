"""Async (one-step off-policy) rollouts against the synchronous loop on the CPU demo task.

    python -m trainer.bench async-rollouts [--quick] [--steps N] [--seeds 0 1 2] [--json]
    python -m trainer.bench async-rollouts --shape 512,4 [--batch 64] [--new-tokens 32] ...

Each seed runs both arms back to back in this one process (sync, then async), so both see the
same machine load; report the ratios, not the absolute seconds. Both arms are the demo config
(trainer/cli.py DEMO_CONFIG) with `loss.tis_cap: 2.0` (async needs it; the sync arm gets it too so
the only difference is the schedule), no probe, and a held-out eval at the start and the end.
Figures per arm: mean and median `time/step` (wall-clock of a step: for async, the wait for the
prefetched batch, not its generation), the mean reward of the last 10 steps, final eval accuracy,
and for async the mean staleness and TIS weight. --quick: 30 steps, seeds 0 and 1.

`--shape HIDDEN,LAYERS` times the schedule on a wider model instead (random weights, head_dim 64,
built once under the cache dir): it learns nothing, so only the seconds mean anything. To give its
update a real forward and backward although every reward is 0, that arm uses `reinforce_pp`, no
priors and a small KL term in the loss (`kl_coef` 0.001: a reference forward and a full backward
every step), `--batch` prompts and `--new-tokens` tokens each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ARMS = {"sync": {"async_rollouts": False}, "async": {"async_rollouts": True}}


def run_arm(name: str, steps: int, seed: int, out: Path, cache: Path, threads: int,
            shape: tuple[int, int] | None = None, batch: int = 64, new_tokens: int = 32
            ) -> dict[str, Any]:
    from trainer.cli import demo_config, prepare_demo
    from trainer.loop import train
    from trainer.sinks import JsonlSink, read_jsonl_metrics

    model, data = prepare_demo(cache)
    run_dir = out / f"{name}-seed{seed}"
    loss: dict[str, Any] = {"aggregation": "seq_mean", "tis_cap": 2.0}
    extra: dict[str, Any] = {}
    if shape is not None:
        model = _wide_model(cache, *shape)
        loss.update(kl_coef=0.001)
        extra = {"estimator": "reinforce_pp", "n0": 0, "batch_size": batch, "eval_size": 8,
                 "sampling": {"temperature": 1.0, "max_new_tokens": new_tokens},
                 "optimizer": {"lr": 5e-4, "micro_batch_size": batch}}
    fields = {"probe_every": 0, "eval_every": 0, "eval_size": 200, "checkpoint_every": 0,
              "loss": loss, **extra, **ARMS[name]}
    cfg = demo_config(model, data, run_dir, cache, max_steps=steps, seed=seed, cpu_threads=threads,
                      **fields)
    sink = JsonlSink(run_dir / "metrics.jsonl")
    try:
        result = train(cfg, sink, run_dir=run_dir, resume=False)
    finally:
        sink.close()
    m = read_jsonl_metrics(run_dir / "metrics.jsonl")
    step_s = [m[s]["time/step"] for s in range(1, steps + 1)]
    last = [m[s]["reward/mean"] for s in range(max(1, steps - 9), steps + 1)]
    row = {"arm": name, "seed": seed, "steps": steps,
           "step_seconds_mean": float(np.mean(step_s)),
           "step_seconds_median": float(np.median(step_s)),
           "reward_last10": float(np.mean(last)),
           "eval_initial": result.initial_eval_accuracy, "eval_final": result.final_eval_accuracy,
           "wall_seconds": result.seconds}
    if name == "async":
        row["staleness_mean"] = float(np.mean([m[s]["async/staleness_steps"] for s in m if s]))
        row["tis_weight_mean"] = float(np.mean([m[s]["tis/mean_weight"] for s in m if s]))
        row["generate_seconds_mean"] = float(np.mean(
            [m[s]["async/generate_seconds"] for s in range(1, steps + 1)]))
    return row


def _wide_model(cache: Path, hidden: int, layers: int) -> Path:
    from trainer.tiny import build_tiny_model

    path = cache / f"wide-{hidden}x{layers}"
    if not (path / "config.json").is_file():
        build_tiny_model(path, hidden=hidden, layers=layers, heads=max(1, hidden // 64))
    return path


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {a: [r for r in rows if r["arm"] == a] for a in ARMS}
    mean = {a: {k: float(np.mean([r[k] for r in rs])) for k in
                ("step_seconds_mean", "step_seconds_median", "reward_last10", "eval_final")}
            for a, rs in by.items()}
    ratios = [a["step_seconds_mean"] / s["step_seconds_mean"]
              for a, s in zip(by["async"], by["sync"], strict=True)]
    return {"mean": mean, "async_over_sync_step_seconds": ratios,
            "async_over_sync_step_seconds_mean": float(np.mean(ratios))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench async-rollouts")
    parser.add_argument("--quick", action="store_true", help="30 steps, seeds 0 and 1")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--out", default="runs/bench-async")
    parser.add_argument("--cache-dir", default=".cache/basis")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--shape", default=None, help="HIDDEN,LAYERS: time a wider random model")
    parser.add_argument("--batch", type=int, default=64, help="prompts per step with --shape")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens per rollout with --shape")
    args = parser.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(",")) if args.shape else None
    if shape is not None and len(shape) != 2:
        parser.error("--shape: expected HIDDEN,LAYERS, e.g. 512,4")

    from trainer.cli import _quiet_transformers

    _quiet_transformers()
    steps = args.steps or (30 if args.quick else 150)
    seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else [0, 1, 2])
    rows = []
    for seed in seeds:
        for arm in ARMS:
            rows.append(run_arm(arm, steps, seed, Path(args.out), Path(args.cache_dir), args.threads,
                                shape, args.batch, args.new_tokens))  # type: ignore[arg-type]
            print(json.dumps(rows[-1]), file=sys.stderr)
    result = {"steps": steps, "seeds": seeds, "shape": args.shape, "rows": rows, **summary(rows)}
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))
    return 0
