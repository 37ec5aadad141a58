"""BASIS options replayed on a real training run: `python -m trainer.bench history-replay`.

    python -m trainer.bench history-replay                      # demo run of 1500 steps, then replay
    python -m trainer.bench history-replay --trace t.npz        # reuse (or save) the recorded trace
    python -m trainer.bench history-replay --json

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

VARIANTS: dict[str, dict[str, Any]] = {
    "basis": {},
    "basis[history=off]": {"history": False},
    "basis[drift=0]": {"history_drift": 0.0},
    "basis[drift=0.001]": {"history_drift": 0.001},
    "basis[drift=0.01]": {"history_drift": 0.01},
    "basis[drift=0.03]": {"history_drift": 0.03},
    "basis[eb]": {"prior_shrinkage": "empirical_bayes"},
}


def record_demo(steps: int, cache_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Run the CPU demo for `steps` steps and return what the training estimator saw."""
    from trainer.cli import main as trainer_main

    trace: dict[str, Any] = {"priors": None, "ids": [], "rewards": []}
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

    Basis.set_priors, Basis.compute = recording_set_priors, recording_compute
    try:
        rc = trainer_main(["demo", "--max-steps", str(steps), "--out", str(out_dir),
                           "--cache-dir", str(cache_dir), "--json"])
    finally:
        Basis.set_priors, Basis.compute = set_priors, compute
    if rc != 0 or trace["priors"] is None:
        raise RuntimeError(f"the demo run failed (exit {rc}) or never set BASIS priors")
    return trace


def save_trace(path: Path, trace: dict[str, Any]) -> None:
    ids, priors, n0 = trace["priors"]
    np.savez_compressed(path, prior_ids=ids, priors=priors, n0=n0,
                        step_ids=np.stack(trace["ids"]), step_rewards=np.stack(trace["rewards"]))


def load_trace(path: Path) -> dict[str, Any]:
    with np.load(path) as f:
        return {"priors": (f["prior_ids"], f["priors"], int(f["n0"])),
                "ids": list(f["step_ids"]), "rewards": list(f["step_rewards"])}


def replay(trace: dict[str, Any], variants: dict[str, dict[str, Any]] = VARIANTS
           ) -> dict[str, np.ndarray]:
    """Per-step mean (b - r)^2 over scorable samples, per variant (T,), plus `loo_batch_mean`."""
    ids0, priors, n0 = trace["priors"]
    out: dict[str, np.ndarray] = {}
    for label, options in variants.items():
        est = get_estimator("basis", **options)
        est.set_priors(ids0, priors, n0=n0)
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


def summary(scores: dict[str, np.ndarray], parts: int = 4) -> dict[str, Any]:
    ref = scores["basis"].mean()
    return {
        label: {
            "score": float(s.mean()),
            "minus_basis": float(s.mean() - ref),
            "by_part": [float(p.mean()) for p in np.array_split(s, parts)],
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
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)

    if args.trace is not None and args.trace.is_file():
        trace = load_trace(args.trace)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            trace = record_demo(args.steps, Path(args.cache_dir).expanduser(), Path(tmp) / "run")
        if args.trace is not None:
            save_trace(args.trace, trace)
    result = summary(replay(trace))
    if args.json:
        json.dump({"steps": len(trace["ids"]), "variants": result}, sys.stdout, indent=2)
        print()
        return 0
    print(f"{len(trace['ids'])} recorded steps; score = mean (b - r)^2 on the training batch "
          "(differences = value-MSE differences)")
    print(f"{'variant':<22}{'score':>9}{'- basis':>10}   by quarter of the run")
    for label, s in result.items():
        parts = " ".join(f"{p:.4f}" for p in s["by_part"])
        print(f"{label:<22}{s['score']:9.4f}{s['minus_basis']:+10.4f}   {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
