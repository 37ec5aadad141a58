"""Value-MSE on real training runs: `python -m trainer.bench real-mse --seeds S --json`.

    python -m trainer.bench real-mse --quick                 # 1 seed, 200 steps, probe every 5
    python -m trainer.bench real-mse --seeds 3 --json        # seeds 0, 1, 2; 400 steps each
    python -m trainer.bench real-mse --seeds 3 --traces DIR  # reuse recorded traces (no model run)
    python -m trainer.bench real-mse --ablation              # BASIS's parts one by one

Runs the CPU demo (tiny model, synthetic arithmetic, BASIS trains with its defaults, one rollout
per prompt; trainer/cli.py DEMO_CONFIG) with a denser probe: every `probe_every` steps, M = 32
rollouts on the first 32 prompts of the batch. It records a *trace* per seed: the priors, every
step's prompt ids, single-rollout rewards and prompt features (the loop's feature pass), and every
probe's M rewards. The estimators are then scored offline on that trace: each is fed the recorded
steps in order (stateful ones keep their state) and its baselines at the probe prompts are compared
with the probe's Monte Carlo truth. So every estimator is scored on the same probe prompts and the
same policy stream, and a new estimator variant is re-scored in seconds without running the model
(`--traces`).

Score (DESIGN.md section 3, per probe prompt): (b - V_M)^2 - s^2 / M, the bias-corrected squared
error (V_M, s^2: mean and unbiased variance of the M probe rewards). group_mean_k uses k of the
probe rollouts as its group and the other M - k as the truth, averaged over the M / k disjoint
blocks (each block's estimate is unbiased; averaging lowers the variance, not the mean).

Report: per estimator the mean over all (seed, probe, prompt) units, and the paired ratio to
group_mean_8 (ratio of means on the same units) with a 95% percentile bootstrap CI. The bootstrap
resamples whole probes (a probe's prompts share one policy state) within each seed, so both probe
prompts and seeds enter the interval. `batch_score` is history-replay's figure: mean (b - r)^2 over
every training sample of every step (b never sees r, so its differences between estimators are
value-MSE differences; not defined for reinforce_pp, whose batch mean includes r_i).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.advantages import AdvantageBatch, Basis, get_estimator
from trainer.probe import per_prompt_errors

PROBE_PROMPTS = 32
PROBE_ROLLOUTS = 32
REFERENCE = "group_mean_8"


@dataclass(frozen=True)
class Spec:
    """One estimator to score: a registered single-rollout estimator with options, or a group
    mean of k probe rollouts (estimator=None)."""

    label: str
    estimator: str | None
    options: dict[str, Any] = field(default_factory=dict)
    k: int = 1


DEFAULT_SPECS = (
    Spec("basis", "basis"),
    Spec("basis[cross]", "basis", {"cross_prompt": True}),
    Spec("basis_paper", "basis_paper"),
    Spec("reinforce_pp", "reinforce_pp"),
    Spec("group_mean_4", None, k=4),
    Spec("group_mean_8", None, k=8),
)

# BASIS's parts added one at a time (docs/benchmarks.md). "prior only" pins c at 0 with an
# overwhelming pull towards the previous c (= 0), so b = p(x).
ABLATION_SPECS = (
    Spec("prior only", "basis_paper", {"c_prior_strength": 1e12}),
    Spec("+ calibration (basis_paper)", "basis_paper"),
    Spec("+ kappa", "basis", {"history": False, "cross_prompt": False}),
    Spec("+ history", "basis", {"cross_prompt": False}),
    Spec("+ cross-prompt", "basis", {"cross_prompt": True}),
    Spec("group_mean_8", None, k=8),
)


# What else the information on the trace allows (docs/benchmarks.md, "the bound"): the history's
# drift, the shared calibration pinned, empirical-Bayes priors, a longer cross-prompt memory.
ENVELOPE_SPECS = (
    Spec("basis", "basis"),
    Spec("basis[drift=0.001]", "basis", {"history_drift": 0.001}),
    Spec("basis[drift=0.01]", "basis", {"history_drift": 0.01}),
    Spec("basis[c pinned at 0]", "basis", {"c_prior_strength": 1e12}),
    Spec("basis[eb]", "basis", {"prior_shrinkage": "empirical_bayes"}),
    Spec("basis[cross, memory=4]", "basis", {"cross_prompt": True, "cross_memory": 4}),
    Spec("group_mean_8", None, k=8),
)


# ------------------------------------------------------------------------------ recording


def record(seed: int, steps: int, cache: Path, out: Path, probe_every: int,
           threads: int = 1) -> dict[str, Any]:
    """Run the demo (BASIS, defaults) for `steps` steps with seed `seed`; return its trace."""
    from trainer.cli import demo_config, prepare_demo
    from trainer.loop import train
    from trainer.probe import ValueProbe
    from trainer.sinks import ConsoleSink

    model, data = prepare_demo(cache)
    cfg = demo_config(model, data, out, cache, max_steps=steps, seed=seed, cpu_threads=threads,
                      probe_every=probe_every, probe_prompts=PROBE_PROMPTS,
                      probe_rollouts=PROBE_ROLLOUTS, eval_every=steps, checkpoint_every=steps)
    trace: dict[str, Any] = {"seed": seed, "ids": [], "rewards": [], "features": [],
                             "probe_step": [], "probe_rewards": []}
    saved = {k: ValueProbe.__dict__[k] for k in ("uses_features", "set_priors", "observe",
                                                 "measure")}

    def set_priors(self, prompt_ids, priors, n0):
        trace["priors"] = (np.asarray(prompt_ids).astype(str), np.asarray(priors, float), n0)
        return saved["set_priors"](self, prompt_ids, priors, n0)

    def observe(self, batch):
        trace["ids"].append(batch.prompt_ids.copy())
        trace["rewards"].append(batch.rewards.copy())
        trace["features"].append(batch.features.astype(np.float32))
        return saved["observe"](self, batch)

    def measure(self, positions, rewards):
        if not np.array_equal(positions, np.arange(len(positions))):
            raise RuntimeError("the probe is expected to measure the first prompts of the batch")
        trace["probe_step"].append(len(trace["ids"]) - 1)
        trace["probe_rewards"].append(np.asarray(rewards, dtype=np.float64).copy())
        return saved["measure"](self, positions, rewards)

    ValueProbe.uses_features = property(lambda self: True)  # record features for every step
    ValueProbe.set_priors, ValueProbe.observe, ValueProbe.measure = set_priors, observe, measure
    sink = ConsoleSink(steps, every=max(1, steps // 5))
    try:
        train(cfg, sink, run_dir=out, resume=False)
    finally:
        sink.close()
        for k, v in saved.items():
            setattr(ValueProbe, k, v)
    if "priors" not in trace or not trace["probe_step"]:
        raise RuntimeError("the demo run set no priors or ran no probe")
    for k in ("ids", "rewards", "probe_step", "probe_rewards"):
        trace[k] = np.stack(trace[k]) if k != "probe_step" else np.asarray(trace[k])
    # float16 as on disk, so a recorded and a reloaded trace score identically
    trace["features"] = np.stack(trace["features"]).astype(np.float16).astype(np.float64)
    return trace


def save_trace(path: Path, trace: dict[str, Any]) -> None:
    ids, priors, n0 = trace["priors"]
    np.savez(path, seed=trace["seed"], prior_ids=ids, priors=priors, n0=n0,
             step_ids=trace["ids"], step_rewards=trace["rewards"],
             step_features=trace["features"].astype(np.float16),
             probe_step=trace["probe_step"], probe_rewards=trace["probe_rewards"])


def load_trace(path: Path) -> dict[str, Any]:
    with np.load(path) as f:
        return {"seed": int(f["seed"]), "priors": (f["prior_ids"], f["priors"], int(f["n0"])),
                "ids": f["step_ids"], "rewards": f["step_rewards"],
                "features": f["step_features"].astype(np.float64),
                "probe_step": f["probe_step"], "probe_rewards": f["probe_rewards"]}


# -------------------------------------------------------------------------------- scoring


def group_terms(rewards: np.ndarray, k: int) -> np.ndarray:
    """(P,) group_mean_k's per-prompt term, averaged over the M // k disjoint blocks of k."""
    blocks = rewards.shape[1] // k
    out = np.zeros(rewards.shape[0])
    for j in range(blocks):
        head = rewards[:, j * k:(j + 1) * k]
        rest = np.delete(rewards, np.s_[j * k:(j + 1) * k], axis=1)
        out += per_prompt_errors(np.nanmean(head, axis=1), rest)
    return out / blocks


def score_trace(trace: dict[str, Any], spec: Spec) -> dict[str, Any]:
    """Per-probe terms (n_probes, P) and the batch score of one spec on one trace."""
    pr = trace["probe_rewards"]
    if spec.estimator is None:
        return {"terms": np.stack([group_terms(r, spec.k) for r in pr]), "batch_score": None}
    est = get_estimator(spec.estimator, **spec.options)
    ids0, priors, n0 = trace["priors"]
    if isinstance(est, Basis):
        est.set_priors(ids0, priors, n0=n0)
    at = {int(s): j for j, s in enumerate(trace["probe_step"])}
    terms = np.zeros(pr.shape[:2])
    sq, count = 0.0, 0
    for t in range(len(trace["ids"])):
        r = trace["rewards"][t]
        b = est.compute(AdvantageBatch(r, trace["ids"][t], trace["features"][t])).baselines
        ok = ~np.isnan(r)
        sq, count = sq + float(np.sum((b[ok] - r[ok]) ** 2)), count + int(ok.sum())
        if t in at:
            j = at[t]
            terms[j] = per_prompt_errors(b[: pr.shape[1]], pr[j])
    loo = spec.estimator != "reinforce_pp"  # its batch mean includes r_i
    return {"terms": terms, "batch_score": sq / count if loo else None}


def bootstrap_ratio(num: list[np.ndarray], den: list[np.ndarray], reps: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Ratio of mean terms (paired) and its 95% CI, resampling probes within each seed.

    num, den: per seed, (n_probes, P) terms of the same units."""
    rng = np.random.default_rng(seed)
    n_sum = [a.sum(axis=1) for a in num]  # per probe sums
    d_sum = [a.sum(axis=1) for a in den]
    ratio = sum(a.sum() for a in n_sum) / sum(a.sum() for a in d_sum)
    boots = np.empty(reps)
    for i in range(reps):
        tn = td = 0.0
        for a, b in zip(n_sum, d_sum, strict=True):
            pick = rng.integers(0, a.size, a.size)
            tn += a[pick].sum()
            td += b[pick].sum()
        boots[i] = tn / td
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(ratio), float(lo), float(hi)


def evaluate(traces: list[dict[str, Any]], specs: Sequence[Spec] = DEFAULT_SPECS,
             reps: int = 2000) -> dict[str, Any]:
    """The JSON report for `specs` on `traces` (see the module docstring)."""
    scored = {s.label: [score_trace(t, s) for t in traces] for s in specs}
    ref = [group_terms_all(t, 8) for t in traces]
    out: dict[str, Any] = {}
    for label, runs in scored.items():
        terms = [r["terms"] for r in runs]
        ratio, lo, hi = bootstrap_ratio(terms, ref, reps)
        bs = [r["batch_score"] for r in runs]
        out[label] = {
            "value_mse": float(np.mean(np.concatenate([t.ravel() for t in terms]))),
            "value_mse_per_seed": [float(t.mean()) for t in terms],
            f"ratio_to_{REFERENCE}": ratio,
            "ci95": [lo, hi],
            "batch_score": None if None in bs else float(np.mean(bs)),
        }
    return out


def group_terms_all(trace: dict[str, Any], k: int) -> np.ndarray:
    return np.stack([group_terms(r, k) for r in trace["probe_rewards"]])


# ----------------------------------------------------------------------------------- main


def _traces(args) -> list[dict[str, Any]]:
    out = []
    tdir = Path(args.traces) if args.traces else None
    for seed in range(args.seed0, args.seed0 + args.seeds):
        path = tdir / f"seed{seed}-steps{args.steps}.npz" if tdir else None
        if path is not None and path.is_file():
            out.append(load_trace(path))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            trace = record(seed, args.steps, Path(args.cache_dir), Path(tmp) / "run",
                           args.probe_every, args.threads)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_trace(path, trace)
        out.append(trace)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.bench real-mse", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1, help="number of training seeds")
    ap.add_argument("--seed0", type=int, default=0, help="first seed")
    ap.add_argument("--steps", type=int, default=400, help="training steps per seed")
    ap.add_argument("--probe-every", type=int, default=10, help="steps between probes")
    ap.add_argument("--quick", action="store_true", help="1 seed, 200 steps, probe every 5")
    ap.add_argument("--traces", help="directory of traces: reused if present, else saved there")
    ap.add_argument("--cache-dir", default=".cache/basis", help="demo model/data/priors cache")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ablation", action="store_true", help="score BASIS's parts one by one")
    ap.add_argument("--envelope", action="store_true",
                    help="score BASIS variants that bound what the trace's information allows")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.probe_every = 1, 200, 5

    from trainer.cli import _quiet_transformers

    _quiet_transformers()
    traces = _traces(args)
    specs = ABLATION_SPECS if args.ablation else ENVELOPE_SPECS if args.envelope else DEFAULT_SPECS
    report = evaluate(traces, specs, args.bootstrap)
    units = sum(t["probe_rewards"].shape[0] * t["probe_rewards"].shape[1] for t in traces)
    result = {"seeds": [t["seed"] for t in traces], "steps": args.steps,
              "probe": {"prompts": PROBE_PROMPTS, "rollouts": PROBE_ROLLOUTS,
                        "every": args.probe_every, "units": units},
              "estimators": report}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"seeds {result['seeds']}, {args.steps} steps, {units} probe prompt-units")
    print(f"{'estimator':<30}{'value-MSE':>10}{'/ gm8':>8}{'95% CI':>18}{'batch':>9}")
    for label, r in report.items():
        bs = "" if r["batch_score"] is None else f"{r['batch_score']:.4f}"
        ci = "[{:.3f}, {:.3f}]".format(*r["ci95"])
        print(f"{label:<30}{r['value_mse']:10.4f}{r['ratio_to_group_mean_8']:8.3f}{ci:>18}{bs:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
