"""BASIS vs REINFORCE++ vs GRPO on the CPU demo task: accuracy against time and rollouts, value-MSE.

    python -m trainer.bench demo-compare [--steps N] [--json] [--out DIR] [--only NAME ...]

Each arm is the demo config (trainer/cli.py DEMO_CONFIG) with one change:
- `basis`: 1 rollout per prompt, `batch_size` prompts per step (+ n0 offline rollouts per
  training prompt before step 1, counted in its rollouts and time).
- `reinforce_pp`: 1 rollout per prompt, same prompts per step.
- `grpo`: 8 rollouts per prompt over batch_size / 8 prompts, i.e. the *same rollouts per step* (the
  cost that dominates a step), so curves compare at equal generation budget per step.
All arms share seed, model, data and probe; the probe logs value_mse of basis, reinforce_pp (as
shadows) and group_mean_8 in every arm, so the value-MSE columns average over three policy streams.
Prints a table (stderr) and, with --json, one JSON object on stdout's last line with per-arm
curves: [{step, rollouts, train_seconds, eval_accuracy}], final/best accuracy and mean value-MSE.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ARMS: dict[str, dict[str, Any]] = {
    "basis": {"estimator": "basis", "rollouts_per_prompt": 1},
    "reinforce_pp": {"estimator": "reinforce_pp", "rollouts_per_prompt": 1},
    "grpo": {"estimator": "grpo", "rollouts_per_prompt": 8},
}


def run_arm(name: str, steps: int, out: Path, cache: Path, seed: int, threads: int = 1
            ) -> dict[str, Any]:
    from trainer.cli import DEMO_CONFIG, demo_config, prepare_demo
    from trainer.loop import train
    from trainer.sinks import ConsoleSink, JsonlSink, MultiSink, read_jsonl_metrics

    model, data = prepare_demo(cache)
    arm = dict(ARMS[name])
    batch = DEMO_CONFIG["batch_size"]
    if arm["rollouts_per_prompt"] > 1:
        arm["batch_size"] = max(DEMO_CONFIG["probe_prompts"], batch // arm["rollouts_per_prompt"])
    run_dir = out / name
    cfg = demo_config(model, data, run_dir, cache, max_steps=steps, seed=seed,
                      cpu_threads=threads, **arm)
    sink = MultiSink(ConsoleSink(steps, every=max(1, steps // 10)), JsonlSink(run_dir / "metrics.jsonl"))
    try:
        result = train(cfg, sink, run_dir=run_dir, resume=False)
    finally:
        sink.close()
    return summarise(name, cfg.rollouts_per_prompt * cfg.batch_size,
                     read_jsonl_metrics(run_dir / "metrics.jsonl"), result.seconds)


def summarise(name: str, rollouts_per_step: int, metrics: dict[int, dict], seconds: float) -> dict:
    """Curves and summary figures from one arm's metrics (step -> name -> value)."""
    curve = [
        {"step": s, "rollouts": m.get("rollouts/total"),
         "train_seconds": m.get("time/train_elapsed", 0.0), "eval_accuracy": m["eval/accuracy"]}
        for s, m in sorted(metrics.items()) if m.get("eval/accuracy") is not None
    ]
    mse: dict[str, float] = {}
    for key in sorted({k for m in metrics.values() for k in m if k.startswith("value_mse/")}):
        vals = [m[key] for m in metrics.values() if m.get(key) is not None]
        mse[key.split("/", 1)[1]] = float(np.mean(vals)) if vals else float("nan")
    acc = [c["eval_accuracy"] for c in curve]
    return {
        "estimator": name,
        "rollouts_per_step": rollouts_per_step,
        "initial_eval_accuracy": acc[0] if acc else None,
        "final_eval_accuracy": acc[-1] if acc else None,
        "best_eval_accuracy": max(acc) if acc else None,
        "rollouts_total": curve[-1]["rollouts"] if curve else None,
        "train_seconds": curve[-1]["train_seconds"] if curve else None,
        "wall_seconds": seconds,
        "value_mse": mse,
        "curve": curve,
    }


def table(rows: list[dict]) -> str:
    names = sorted({k for r in rows for k in r["value_mse"]})
    head = ["estimator", "rollouts/step", "acc start", "acc final", "acc best", "rollouts",
            "train s", *[f"vmse {n}" for n in names]]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        cells = [r["estimator"], str(r["rollouts_per_step"]), f"{r['initial_eval_accuracy']:.3f}",
                 f"{r['final_eval_accuracy']:.3f}", f"{r['best_eval_accuracy']:.3f}",
                 f"{r['rollouts_total']:.0f}", f"{r['train_seconds']:.0f}",
                 *[f"{r['value_mse'].get(n, float('nan')):.4f}" for n in names]]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench demo-compare")
    parser.add_argument("--steps", type=int, default=None, help="steps per arm (default: demo's)")
    parser.add_argument("--only", nargs="*", choices=sorted(ARMS), default=list(ARMS))
    parser.add_argument("--out", default="runs/demo-compare")
    parser.add_argument("--cache-dir", default=".cache/basis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from trainer.cli import DEMO_CONFIG, _quiet_transformers

    _quiet_transformers()
    steps = args.steps or DEMO_CONFIG["max_steps"]
    rows = [run_arm(n, steps, Path(args.out), Path(args.cache_dir), args.seed, args.threads)
            for n in args.only]
    print(table(rows), file=sys.stderr)
    if args.json:
        print(json.dumps({"steps": steps, "arms": rows}))
    return 0
