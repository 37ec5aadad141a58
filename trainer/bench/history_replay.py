"""BASIS options replayed on a real training run: `python -m trainer.bench history-replay`.

    python -m trainer.bench history-replay                      # demo run of 1500 steps, then replay
    python -m trainer.bench history-replay --trace t.npz        # reuse (or save) the recorded trace
    python -m trainer.bench history-replay --json
    python -m trainer.bench history-replay --n0 24              # also: priors from 8 / 16 / 24

Records what the training estimator saw in a real run of the CPU demo (`python -m trainer demo`:
tiny model, arithmetic task, BASIS, one rollout per prompt): the priors it was given and, for every
step, the batch's prompt ids and rewards. Then replays that sequence through BASIS variants
(history on/off, history drift, empirical-Bayes priors) and scores each by its mean squared
error against the *observed* rewards.

Why that measures value-MSE: every variant's b_i is built from priors, other samples of the batch
(leave-one-out) and earlier steps only, so b_i is independent of r_i given the prompt, and
E[(b_i - r_i)^2] = E[(b_i - V(x_i))^2] + E[V(x_i)(1 - V(x_i))]. The second term is the same for
every variant on the same trace, so differences between variants' scores are differences of their
value-MSE, measured on all 256 training samples of every step (the in-run probe uses 16 prompts
every 100 steps). The leave-one-out batch mean is listed as the single-rollout reference
(REINFORCE++'s own baseline includes r_i, which would bias its score down). The policy's trajectory
is the recorded one (trained with default BASIS); only the value estimates are replayed.

With `--n0 K` the demo draws K reference rollouts per prompt; their raw rewards are recorded too,
and the replay adds `basis[n0=m]` for m = 8, 16, ... < K: priors from the first m rollouts only,
on the same trajectory, so the value of a larger offline budget is measured on a real run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.advantages import AdvantageBatch, Basis, _loo_batch_mean, get_estimator
from trainer.priors import estimate_priors

VARIANTS: dict[str, dict[str, Any]] = {
    "basis": {},
    "basis[history=off]": {"history": False},
    "basis[drift=0]": {"history_drift": 0.0},
    "basis[drift=0.001]": {"history_drift": 0.001},
    "basis[drift=0.01]": {"history_drift": 0.01},
    "basis[drift=0.03]": {"history_drift": 0.03},
    "basis[eb]": {"prior_shrinkage": "empirical_bayes"},
}


def record_demo(steps: int, cache_dir: Path, out_dir: Path, n0: int | None = None
                ) -> dict[str, Any]:
    """Run the CPU demo for `steps` steps and return what the training estimator saw.

    n0: reference rollouts per prompt (default: the demo's); their raw rewards are kept as
    `reference` (N, n0) when they are drawn in this run (not when the priors came from the cache).
    """
    import trainer.cli
    import trainer.loop
    from trainer.cli import main as trainer_main

    trace: dict[str, Any] = {"priors": None, "ids": [], "rewards": [], "reference": None}
    from_rewards = trainer.loop.priors_from_rewards

    def recording_from_rewards(rewards):
        trace["reference"] = np.asarray(rewards, dtype=np.float64).copy()
        return from_rewards(rewards)

    owner: list[int] = []
    set_priors, compute = Basis.set_priors, Basis.compute

    def recording_set_priors(self, prompt_ids, priors, n0=8):
        if trace["priors"] is None:
            owner.append(id(self))
            trace["priors"] = (np.asarray(prompt_ids).astype(str), np.asarray(priors, float), n0)
        return set_priors(self, prompt_ids, priors, n0)

    def recording_compute(self, batch):
        if owner and id(self) == owner[0]:
            trace["ids"].append(np.asarray(batch.prompt_ids).astype(str))
            trace["rewards"].append(np.asarray(batch.rewards, dtype=np.float64).copy())
        return compute(self, batch)

    demo_n0 = trainer.cli.DEMO_CONFIG["n0"]
    Basis.set_priors, Basis.compute = recording_set_priors, recording_compute
    trainer.loop.priors_from_rewards = recording_from_rewards
    if n0 is not None:
        trainer.cli.DEMO_CONFIG["n0"] = n0
    try:
        rc = trainer_main(["demo", "--max-steps", str(steps), "--out", str(out_dir),
                           "--cache-dir", str(cache_dir), "--json"])
    finally:
        Basis.set_priors, Basis.compute = set_priors, compute
        trainer.loop.priors_from_rewards = from_rewards
        trainer.cli.DEMO_CONFIG["n0"] = demo_n0
    if rc != 0 or trace["priors"] is None:
        raise RuntimeError(f"the demo run failed (exit {rc}) or never set BASIS priors")
    return trace


def save_trace(path: Path, trace: dict[str, Any]) -> None:
    ids, priors, n0 = trace["priors"]
    extra = {} if trace.get("reference") is None else {"reference": trace["reference"]}
    np.savez_compressed(path, prior_ids=ids, priors=priors, n0=n0,
                        step_ids=np.stack(trace["ids"]), step_rewards=np.stack(trace["rewards"]),
                        **extra)


def load_trace(path: Path) -> dict[str, Any]:
    with np.load(path) as f:
        return {"priors": (f["prior_ids"], f["priors"], int(f["n0"])),
                "ids": list(f["step_ids"]), "rewards": list(f["step_rewards"]),
                "reference": f["reference"] if "reference" in f.files else None}


def replay(trace: dict[str, Any], variants: dict[str, dict[str, Any]] = VARIANTS
           ) -> dict[str, np.ndarray]:
    """Per-step mean (b - r)^2 over scorable samples, per variant (T,), plus `loo_batch_mean`."""
    ids0, priors, n0 = trace["priors"]
    runs = [(label, options, priors, n0) for label, options in variants.items()]
    ref = trace.get("reference")
    if ref is not None:  # priors from the first m reference rollouts, same trajectory
        for m in range(8, ref.shape[1], 8):
            sub = ref[:, :m]
            runs.append((f"basis[n0={m}]", {},
                         estimate_priors(np.nansum(sub, axis=1), (~np.isnan(sub)).sum(axis=1)), m))
    out: dict[str, np.ndarray] = {}
    for label, options, p, n in runs:
        est = get_estimator("basis", **options)
        est.set_priors(ids0, p, n0=n)
        scores = []
        for ids, r in zip(trace["ids"], trace["rewards"], strict=True):
            b = est.compute(AdvantageBatch(r, ids)).baselines
            ok = ~np.isnan(r)
            scores.append(float(np.mean((b[ok] - r[ok]) ** 2)))
        out[label] = np.array(scores)
    loo = []
    for r in trace["rewards"]:
        ok = ~np.isnan(r)
        loo.append(float(np.mean((_loo_batch_mean(r, ok)[ok] - r[ok]) ** 2)))
    out["loo_batch_mean"] = np.array(loo)
    return out


def summary(scores: dict[str, np.ndarray], parts: int = 4, epoch_steps: int = 1
            ) -> dict[str, Any]:
    """Mean score, its difference to `basis`, per part of the run, and over the first epoch
    (`epoch_steps`: steps until the sampler has gone through the prompts once)."""
    ref = scores["basis"].mean()
    return {
        label: {
            "score": float(s.mean()),
            "minus_basis": float(s.mean() - ref),
            "by_part": [float(p.mean()) for p in np.array_split(s, parts)],
            "first_epoch": float(s[:epoch_steps].mean()),
        }
        for label, s in scores.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.bench history-replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500, help="demo training steps to record")
    ap.add_argument("--trace", type=Path,
                    help="trace .npz: replayed if it exists, else recorded there")
    ap.add_argument("--cache-dir", default=".cache/basis", help="demo model/data/priors cache")
    ap.add_argument("--n0", type=int, default=None,
                    help="reference rollouts per prompt in the recorded run (default: the demo's 8); "
                         "priors are drawn fresh so the raw rewards can be replayed in subsets")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    if args.trace is not None and args.trace.is_file():
        trace = load_trace(args.trace)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(args.cache_dir).expanduser() if args.n0 is None else Path(tmp) / "cache"
            trace = record_demo(args.steps, cache, Path(tmp) / "run", n0=args.n0)
        if args.trace is not None:
            save_trace(args.trace, trace)
    epoch = -(-len(trace["priors"][0]) // max(len(trace["ids"][0]), 1))
    result = summary(replay(trace), epoch_steps=epoch)
    if args.json:
        json.dump({"steps": len(trace["ids"]), "variants": result}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{len(trace['ids'])} recorded steps; score = mean (b - r)^2 on the training batch "
          "(differences = value-MSE differences)")
    print(f"{'variant':<22}{'score':>9}{'- basis':>10}{f'epoch 1 ({epoch} st.)':>20}"
          "   by quarter of the run")
    for label, s in result.items():
        parts = " ".join(f"{p:.4f}" for p in s["by_part"])
        print(f"{label:<22}{s['score']:9.4f}{s['minus_basis']:+10.4f}{s['first_epoch']:20.4f}"
              f"   {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
