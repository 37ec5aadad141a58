"""Command line: `python -m trainer run CONFIG` and `python -m trainer demo`.

- `run CONFIG [--json] [--no-resume]`: validate the YAML/JSON config (a bad field or dataset line is
  reported before any model loads, exit code 2), train with a console progress bar on stderr and
  `run_dir/metrics.jsonl`; resumes from the newest checkpoint in `run_dir` unless --no-resume.
  With `num_processes: N > 1` it re-launches itself under torchrun as N ranks (rank 0 writes the
  metrics and the --json line); `torchrun --nproc-per-node N -m trainer run CONFIG` is the same.
- `demo [--json] [--estimator NAME] [--max-steps N] [--out DIR] [--cache-dir DIR]`: the whole
  platform on a laptop CPU with no downloads. Builds and warm-starts the tiny model once into the
  cache dir (trainer/tiny.py), writes the arithmetic dataset, trains with `DEMO_CONFIG` (also in
  configs/demo.yaml) and prints progress. The effective config is saved as `out/config.yaml`, so
  `python -m trainer run out/config.yaml` repeats it.
- With --json, stdout's last line is one JSON object: the TrainResult fields (`steps`, `stopped`,
  `initial_eval_accuracy`, `final_eval_accuracy`, `seconds`) plus `run_dir` and `metrics`. Human
  output goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from trainer.config import ConfigError, TrainConfig

DEMO_ROWS = 4000
DEMO_DATA_SEED = 0
# Tuned on the 2-core CPU machine (docs/benchmarks.md, "CPU demo"): a large batch at a high
# learning rate for the tiny model; eval on 400 held-out problems so +-0.025 is the noise.
DEMO_CONFIG: dict[str, Any] = {
    "reward": "exact",
    "reward_workers": 0,  # exact match is microseconds per item: no pool needed on the demo
    "estimator": "basis",
    "rollouts_per_prompt": 1,
    "batch_size": 256,
    "eval_fraction": 0.1,
    "eval_size": 400,
    "eval_every": 100,
    "sampling": {"temperature": 1.0, "max_new_tokens": 8},
    "loss": {"aggregation": "seq_mean"},
    "optimizer": {"lr": 5e-4, "micro_batch_size": 256, "grad_clip": 1.0, "warmup_steps": 5},
    "n0": 8,
    "probe_every": 100,
    "probe_prompts": 16,
    "probe_rollouts": 32,
    "checkpoint_every": 500,
    "max_steps": 2500,
    "device": "cpu",
    "cpu_threads": 1,  # see _threads: a second thread buys little and hurts on a shared box
    "seed": 0,
}


def _threads(n: int | None) -> None:
    """Set torch's CPU threads when asked. The demo defaults to 1: its matrices are 64 wide, so a
    second thread buys little, and on a shared machine two processes with 2 OpenMP threads each on
    2 cores ran 60x slower per step (spinning threads), measured in docs/benchmarks.md."""
    if n:
        import torch

        torch.set_num_threads(n)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _train(config: TrainConfig, *, resume: bool, as_json: bool) -> int:
    from trainer.loop import train
    from trainer.sinks import ConsoleSink, JsonlSink, MultiSink, NullSink

    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes anything
    sink = MultiSink(ConsoleSink(config.max_steps, every=max(1, config.max_steps // 30)),
                     JsonlSink(run_dir / "metrics.jsonl")) if main_rank else NullSink()
    try:
        result = train(config, sink, run_dir=run_dir, resume=resume,
                       on_status=lambda s: sink.log_event("status", s))
    finally:
        sink.close()
    if not main_rank:
        return 0
    summary = {**asdict(result), "run_dir": str(run_dir),
               "metrics": str(run_dir / "metrics.jsonl")}
    if as_json:
        print(json.dumps(summary), flush=True)
    else:
        print(f"done: {summary}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = TrainConfig.from_file(args.config)
    if config.num_processes > 1:
        from trainer.distributed import env_world_size, launch_command

        if env_world_size() == 1:  # not under torchrun yet: launch num_processes ranks of us
            again = ["trainer", "run", args.config, *(["--json"] if args.json else []),
                     *(["--no-resume"] if args.no_resume else []),
                     *([f"--threads={args.threads}"] if args.threads else [])]
            argv = launch_command(config.num_processes, again)
            return subprocess.run(argv, check=False).returncode
    _threads(args.threads)
    _quiet_transformers()
    return _train(config, resume=not args.no_resume, as_json=args.json)


def demo_config(model: Path, dataset: Path, out: Path, cache: Path, **overrides: Any) -> TrainConfig:
    """The demo's TrainConfig for given paths; overrides replace top-level fields."""
    fields = {**DEMO_CONFIG, **{k: v for k, v in overrides.items() if v is not None},
              "model": str(model), "dataset": str(dataset), "run_dir": str(out),
              "priors_cache_dir": str(cache / "priors")}
    return TrainConfig.from_dict(fields, source="demo config")


def prepare_demo(cache: Path, rows: int = DEMO_ROWS, warm_steps: int | None = None
                 ) -> tuple[Path, Path]:
    """(warm-started demo model dir, arithmetic JSONL) under `cache`, built on first use."""
    from trainer.demo_model import ensure_demo_model, is_demo_model
    from trainer.tasks import generate_arithmetic, write_jsonl

    model_dir = cache / "demo-model"
    if not is_demo_model(model_dir):
        print(f"building and warm-starting the demo model in {model_dir} (about 2 CPU minutes)",
              file=sys.stderr)
    model = ensure_demo_model(model_dir, warm_steps=warm_steps)
    data = cache / f"arith-{rows}-{DEMO_DATA_SEED}.jsonl"
    if not data.is_file():
        write_jsonl(generate_arithmetic(rows, seed=DEMO_DATA_SEED), data)
    return model, data


def cmd_demo(args: argparse.Namespace) -> int:
    _threads(args.threads)
    _quiet_transformers()
    cache = Path(args.cache_dir).expanduser()
    out = Path(args.out) if args.out else Path("runs") / f"demo-{args.estimator}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides: dict[str, Any] = {"estimator": args.estimator, "max_steps": args.max_steps,
                                 "seed": args.seed, "cpu_threads": args.threads}
    if args.rollouts_per_prompt:
        overrides["rollouts_per_prompt"] = args.rollouts_per_prompt
    # Validate before the (slow) model build: a bad --estimator fails at once.
    demo_config(cache / "demo-model", cache / "data.jsonl", out, cache, **overrides)
    model, data = prepare_demo(cache, args.rows, args.warm_steps)
    config = demo_config(model, data, out, cache, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return _train(config, resume=False, as_json=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train with a YAML/JSON TrainConfig")
    run.add_argument("config", help="path to a .yaml/.yml/.json config")
    run.add_argument("--json", action="store_true", help="last stdout line: result as JSON")
    run.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    run.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: torch's, one per core)")
    run.set_defaults(fn=cmd_run)

    demo = sub.add_parser("demo", help="tiny model + arithmetic task, end to end on CPU")
    demo.add_argument("--json", action="store_true", help="last stdout line: result as JSON")
    demo.add_argument("--estimator", default="basis", help="advantage estimator (default basis)")
    demo.add_argument("--rollouts-per-prompt", type=int, default=None,
                      help="k (default 1; group estimators need >= 2)")
    demo.add_argument("--max-steps", type=int, default=None, help="training steps")
    demo.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    demo.add_argument("--out", default=None, help="run directory (default runs/demo-...)")
    demo.add_argument("--cache-dir", default=".cache/basis",
                      help="where the demo model, dataset and priors are kept")
    demo.add_argument("--threads", type=int, default=None,
                      help="torch CPU threads (default: the config's cpu_threads, 1)")
    demo.add_argument("--rows", type=int, default=DEMO_ROWS, help="arithmetic dataset rows")
    demo.add_argument("--warm-steps", type=int, default=None,
                      help="supervised warm-start steps (default: trainer.warmstart's)")
    demo.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from trainer.data import DatasetError

    try:
        return args.fn(args)
    except (ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
