"""Estimator cost: wall time of `compute` on a batch of 4096 samples, next to the tiny model.

    python -m trainer.bench estimator-cost [--samples 4096] [--repeats 20] [--json]

`basis[cross]` gets random (samples, 128) features; the feature pass is the loop's no-grad forward
over the batch's prompts (12 tokens each, like the demo's) that the cross-prompt term needs. For
the demo's batch use `--samples 256` and compare with its step time (docs/benchmarks.md).

Each estimator is timed on a realistic batch (BASIS: priors for every prompt and a few steps of
history first; group estimators: samples / 8 prompts x 8 rollouts), median of `--repeats` calls.
The reference point is the tiny Qwen2-style model (hidden 128, 2 heads of dim 64, 4 layers) of
`trainer.tiny.build_tiny_model`: one forward pass over a micro-batch of 16 sequences x 128 tokens,
and that per-token cost scaled to the whole batch (samples x 128 tokens), the least forward work
a policy update on the batch needs. torch runs with `--threads` threads (default 1, the machine is
shared); numpy's estimator code is single-threaded anyway.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence

import numpy as np

from trainer.advantages import AdvantageBatch, estimate_priors, get_estimator

SEQ_LEN = 128
MICRO_BATCH = 16
FEATURE_DIM = 128
PROMPT_LEN = 12  # the demo's arithmetic prompts are 8-14 characters


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (imports, allocations)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def time_estimators(samples: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Median seconds per `compute` call for each estimator on a batch of `samples`."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 1, samples)
    ids = np.char.add("p", np.arange(samples).astype(str))
    feats = rng.normal(size=(samples, FEATURE_DIM))  # the demo model's hidden size
    single = AdvantageBatch(rng.binomial(1, p).astype(float), ids, feats)
    k = 8
    group = AdvantageBatch(
        rng.binomial(1, np.repeat(p[: samples // k], k)).astype(float),
        np.repeat(ids[: samples // k], k),
    )
    out = {}
    for label, name, options in [
        ("basis", "basis", {}),
        ("basis[history=off]", "basis", {"history": False}),
        ("basis[cross]", "basis", {"cross_prompt": True}),
        ("basis[cross, memory=4]", "basis", {"cross_prompt": True, "cross_memory": 4}),
        ("reinforce_pp", "reinforce_pp", {}),
    ]:
        est = get_estimator(name, **options)
        if name == "basis":
            est.set_priors(ids, estimate_priors(rng.binomial(8, p), 8))
            for _ in range(3):
                est.compute(single)
        out[label] = _median_seconds(lambda est=est: est.compute(single), repeats)
    for name in ("grpo", "rloo", "group_mean"):
        est = get_estimator(name)
        out[f"{name} (k={k})"] = _median_seconds(lambda est=est: est.compute(group), repeats)
    return out


def _tiny_model():
    """The tiny model from trainer.tiny (falls back to an equivalent Qwen2Config)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from trainer.tiny import build_tiny_model

        with tempfile.TemporaryDirectory() as d:
            build_tiny_model(d, seed=0, hidden=128, layers=4, heads=2)
            return AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    except ImportError:
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(0)
        cfg = Qwen2Config(
            vocab_size=106,
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=512,
            max_position_embeddings=512,
        )
        return Qwen2ForCausalLM(cfg).eval()


def time_forward(repeats: int, threads: int) -> float:
    """Median seconds of one forward pass over MICRO_BATCH x SEQ_LEN tokens."""
    import torch

    torch.set_num_threads(threads)
    model = _tiny_model()
    ids = torch.randint(0, model.config.vocab_size, (MICRO_BATCH, SEQ_LEN))

    def forward():
        with torch.no_grad():
            model(input_ids=ids)

    return _median_seconds(forward, max(3, repeats // 4))


def time_feature_pass(samples: int, repeats: int, threads: int) -> float:
    """Median seconds of the loop's prompt-feature pass over `samples` prompts of PROMPT_LEN."""
    import torch

    from trainer.features import prompt_features

    torch.set_num_threads(threads)
    model = _tiny_model()
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, model.config.vocab_size, (samples, PROMPT_LEN), generator=g)
    rows = prompts.tolist()
    return _median_seconds(lambda: prompt_features(model, rows, pad_id=0), max(3, repeats // 4))


def time_demo(steps: int, cache: str, threads: int) -> dict[str, dict[str, float]]:
    """Mean per-step seconds on the CPU demo (probe off) for basis and basis[cross]:
    time/advantage (feature pass + estimator) and time/step, and their ratio."""
    import tempfile
    from pathlib import Path

    from trainer.cli import demo_config, prepare_demo
    from trainer.loop import train
    from trainer.sinks import JsonlSink, read_jsonl_metrics

    model, data = prepare_demo(Path(cache))
    out = {}
    for label, options in (("basis", {}), ("basis[cross]", {"cross_prompt": True})):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp)
            cfg = demo_config(model, data, run, Path(cache), max_steps=steps, probe_every=0,
                              eval_every=0, checkpoint_every=0, cpu_threads=threads,
                              estimator_options=options)
            train(cfg, JsonlSink(run / "m.jsonl"), run_dir=run, resume=False)
            m = [v for k, v in read_jsonl_metrics(run / "m.jsonl").items() if k > 1]
        adv = float(np.mean([x["time/advantage"] for x in m]))
        step = float(np.mean([x["time/step"] for x in m]))
        out[label] = {"advantage_s": adv, "step_s": step, "share": adv / step}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m trainer.bench estimator-cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--demo", type=int, default=0, metavar="STEPS",
                    help="also run the CPU demo STEPS steps with basis and basis[cross] and "
                    "report time/advantage as a share of time/step")
    ap.add_argument("--cache-dir", default=".cache/basis", help="demo model cache (--demo)")
    args = ap.parse_args(argv)

    est = time_estimators(args.samples, args.repeats)
    fwd = time_forward(args.repeats, args.threads)
    fwd_batch = fwd * args.samples / MICRO_BATCH
    est[f"feature pass ({args.samples} x {PROMPT_LEN} tokens)"] = time_feature_pass(
        args.samples, args.repeats, args.threads)
    result = {
        "samples": args.samples,
        "estimator_seconds": est,
        "tiny_forward_seconds": {
            f"micro_batch_{MICRO_BATCH}x{SEQ_LEN}": fwd,
            f"batch_{args.samples}x{SEQ_LEN}_extrapolated": fwd_batch,
        },
    }
    if args.demo:
        result["demo"] = time_demo(args.demo, args.cache_dir, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"batch of {args.samples} samples (median of {args.repeats} calls)")
    print(f"  {'what':<38}{'ms':>10}{'/ forward of whole batch':>26}")
    for name, s in est.items():
        print(f"  {name:<38}{s * 1e3:10.2f}{s / fwd_batch:26.5f}")
    rows = [
        (f"tiny model fwd, {MICRO_BATCH}x{SEQ_LEN} tokens", fwd),
        (f"tiny model fwd, {args.samples}x{SEQ_LEN} (extrapolated)", fwd_batch),
    ]
    for name, s in rows:
        print(f"  {name:<38}{s * 1e3:10.2f}{s / fwd_batch:26.5f}")
    for name, d in result.get("demo", {}).items():
        print(f"  demo {name}: time/advantage {d['advantage_s'] * 1e3:.1f} ms of "
              f"time/step {d['step_s'] * 1e3:.0f} ms ({100 * d['share']:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
