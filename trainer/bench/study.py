"""Research study: the paper's four claims, tested with several seeds and paired comparisons.

    python -m trainer.bench study [--arms A ...] [--seeds 0 1 2 3 4] [--seeds-for ARM=0,1,2]
        [--budget steps:N|rollouts:N|seconds:S] [--budget-for ARM=KIND:N] [--jobs N]
        [--out runs/study] [--docs docs/study] [--smoke] [--json]
    python -m trainer.bench study --render docs/study/study.json [--update-docs docs/benchmarks.md]

Arms are named configs on the CPU demo task (trainer/cli.py DEMO_CONFIG: warm-started tiny model,
arithmetic, exact-match reward), one change each (`ARMS`). Every run of (arm, seed) is its own
process with one torch thread (`--jobs N` runs N at once), writes `OUT/ARM/seedS/result.json` when
it ends, and is skipped on a rerun whose config is unchanged: a killed study resumes at the runs it
had not finished. The aggregate goes to `DOCS/study.json` plus PNG figures.

Choices (what makes the comparisons fair, and what they do not control):
- Seeds pair: seed s of every arm shares the held-out problems (`eval_seed` is fixed), the warm
  start, and the offline priors (cached per seed: basis and basis_paper of seed s read the same
  ones, and the probe's shadow estimators in every arm use them). Differences between arms are
  therefore taken per seed (paired) and summarised over seeds.
- BASIS's offline priors (n0 rollouts of every training prompt) count in its rollouts and
  train-seconds from step 0 (the loop does this), also when read from the per-seed cache.
- Axes: steps, rollouts (incl. priors) and `time/train_elapsed` (rollout + reward + advantage +
  update seconds; eval and probe excluded). Seconds are wall-clock on a shared machine, so they
  carry the machine's load; runs of one study share it, which is what "matched wall-clock" can
  mean here. Accuracy at x on an axis is the last eval at or before x (a step function).
- Value-MSE comes from the loop's probe (trainer/probe.py): on probe steps every single-rollout
  estimator runs as a shadow on the same batch, and M extra rollouts of the same prompts give the
  truth; the loop logs each prompt's bias-corrected error, so estimator pairs are compared prompt
  by prompt on the same truth. Ratios are ratios of mean errors (what "x% lower MSE" means), with
  a two-level bootstrap CI (seeds, then prompt-probes within a seed).
- Statistics: mean +- 95% t-interval over seeds; paired differences with a percentile bootstrap
  CI over seeds (10,000 resamples; with 3-5 seeds a t-interval is printed beside it, since a
  bootstrap of 5 values is coarse); time-to-target = the first train-seconds at which an arm's
  eval accuracy reaches GRPO-8's (256 x 8) final accuracy (mean over its seeds).
- Verdicts (`claims`): "holds" when the CI lies on the claim's side, "does not hold" when it lies
  on the other side, "inconclusive" otherwise; each claim's rule is in `claims`. For paired
  accuracy differences the interval is the union of the bootstrap and the t-interval.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

# ============================================================================== arms


@dataclass(frozen=True)
class Arm:
    estimator: str
    rollouts_per_prompt: int = 1
    prompts_divisor: int = 1  # prompts per step = batch_size // prompts_divisor
    about: str = ""


ARMS: dict[str, Arm] = {
    "basis": Arm("basis", about="ours: the paper's BASIS + per-prompt history + pull of c"),
    "basis_paper": Arm("basis_paper", about="the paper's BASIS: priors + LOO shared calibration"),
    "reinforce_pp": Arm("reinforce_pp", about="batch-mean baseline, whitened (REINFORCE++)"),
    "rloo": Arm("rloo_batch", about="single rollout, leave-one-out batch-mean baseline"),
    "grpo8_same_prompts": Arm("grpo", 8, 1, about="GRPO, 8 rollouts of the same prompts per step"),
    "grpo8_same_rollouts": Arm("grpo", 8, 8, about="GRPO, 8 rollouts, prompts / 8: same rollouts"),
}
GRPO8 = "grpo8_same_prompts"


@dataclass(frozen=True)
class Budget:
    kind: str  # steps | rollouts | seconds
    value: float

    @classmethod
    def parse(cls, text: str) -> Budget:
        m = re.fullmatch(r"(steps|rollouts|seconds):([0-9.]+)", text.strip())
        if not m or float(m.group(2)) <= 0:
            raise ValueError(f"budget {text!r}: expected steps:N, rollouts:N or seconds:S (> 0)")
        return cls(m.group(1), float(m.group(2)))

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


@dataclass
class Spec:
    """A whole study: which (arm, seed) runs, their budget, and the shared task settings."""

    seeds: dict[str, list[int]]  # arm -> seeds
    budgets: dict[str, str]  # arm -> Budget text
    batch_size: int = 256
    eval_every_rollouts: int = 6400  # eval cadence on the rollouts axis (same for every arm) ...
    max_evals: int = 30  # ... but at most this many evals in a run of known steps
    eval_size: int = 400
    probe_every: int = 25
    probe_prompts: int = 16
    probe_rollouts: int = 32
    n0: int = 8
    max_new_tokens: int = 8
    rows: int = 4000  # demo dataset size (generate_arithmetic); priors cost n0 x training prompts
    eval_fraction: float = 0.1
    model: str | None = None  # None = the demo model, built in cache_dir on first use
    dataset: str | None = None
    cache_dir: str = ".cache/basis"
    extra: dict[str, Any] = field(default_factory=dict)  # more TrainConfig fields for every arm

    def runs(self) -> list[tuple[str, int]]:
        return [(a, s) for a in self.seeds for s in self.seeds[a]]


# ======================================================================== one run


def _base_fields(spec: Spec) -> dict[str, Any]:
    from trainer.cli import DEMO_CONFIG, prepare_demo

    model, data = spec.model, spec.dataset
    if model is None or data is None:
        model, data = (str(p) for p in prepare_demo(Path(spec.cache_dir), rows=spec.rows))
    return {**DEMO_CONFIG, "model": model, "dataset": data, "eval_size": spec.eval_size,
            "eval_fraction": spec.eval_fraction,
            "n0": spec.n0, "probe_rollouts": spec.probe_rollouts,
            "sampling": {**DEMO_CONFIG["sampling"], "max_new_tokens": spec.max_new_tokens},
            "checkpoint_every": 0, "cpu_threads": 1, **spec.extra}


def run_config(spec: Spec, arm_name: str, seed: int, run_dir: Path) -> tuple[Any, Budget]:
    """The TrainConfig of one (arm, seed) run and its budget (max_steps resolved for steps and
    rollouts budgets; a seconds budget stops the run from `should_stop`)."""
    from trainer.advantages import ESTIMATORS
    from trainer.config import TrainConfig

    arm, budget = ARMS[arm_name], Budget.parse(spec.budgets[arm_name])
    batch = max(1, spec.batch_size // arm.prompts_divisor)
    per_step = batch * arm.rollouts_per_prompt
    fields = {**_base_fields(spec), "estimator": arm.estimator,
              "rollouts_per_prompt": arm.rollouts_per_prompt, "batch_size": batch, "seed": seed,
              "eval_every": max(1, round(spec.eval_every_rollouts / per_step)),
              "probe_every": spec.probe_every, "probe_prompts": min(spec.probe_prompts, batch),
              "output_dir": str(run_dir),
              # Per-seed priors: seeds stay independent, arms of one seed share them (paired).
              "priors_cache_dir": str(Path(spec.cache_dir) / f"study-priors-seed{seed}")}
    cfg = TrainConfig.from_dict({**fields, "max_steps": 1}, source=f"study arm {arm_name}")
    if budget.kind == "steps":
        steps = int(budget.value)
    elif budget.kind == "rollouts":
        from trainer.loop import _load_rows

        takes_priors = callable(getattr(ESTIMATORS[arm.estimator], "set_priors", None))
        priors = spec.n0 * len(_load_rows(cfg)[0]) if takes_priors else 0
        steps = int((budget.value - priors) // per_step)
        if steps < 1:
            raise ValueError(f"budget {budget} for {arm_name}: the offline priors ({priors} "
                             f"rollouts) leave no step of {per_step} rollouts")
    else:
        steps = 10**9
    if steps < 10**9:  # an arm with many rollouts per step would otherwise eval every step
        cfg = cfg.model_copy(update={"eval_every": max(cfg.eval_every, -(-steps // spec.max_evals))})
    return cfg.model_copy(update={"max_steps": steps}), budget


def run_key(spec: Spec, arm: str, seed: int) -> str:
    cfg, budget = run_config(spec, arm, seed, Path("-"))
    blob = json.dumps([cfg.model_dump(mode="json"), str(budget)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Tracker:
    """A sink that remembers the latest train-seconds, for a seconds budget's `should_stop`."""

    def __init__(self) -> None:
        self.train_seconds = 0.0

    def log_step(self, step, metrics, histograms, samples=()) -> None:
        self.train_seconds = float(metrics.get("time/train_elapsed") or self.train_seconds)

    def log_event(self, kind, message, data=None) -> None:
        pass

    def close(self) -> None:
        pass


def run_one(spec_dict: dict[str, Any], arm: str, seed: int, out: str) -> dict[str, Any]:
    """Train one (arm, seed) run in this process and write its result.json; returns it."""
    import shutil

    from trainer.cli import _quiet_transformers
    from trainer.loop import train
    from trainer.sinks import JsonlSink, MultiSink

    _quiet_transformers()
    spec = Spec(**spec_dict)
    run_dir = Path(out) / arm / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a half-finished run starts over
    cfg, budget = run_config(spec, arm, seed, run_dir)
    tracker = _Tracker()
    sink = MultiSink(JsonlSink(run_dir / "metrics.jsonl"), tracker)
    stop = (lambda: tracker.train_seconds >= budget.value) if budget.kind == "seconds" else (
        lambda: False)
    t = time.perf_counter()
    try:
        train(cfg, sink, run_dir=run_dir, resume=False, should_stop=stop)
    finally:
        sink.close()
    result = {"arm": arm, "seed": seed, "key": run_key(spec, arm, seed), "budget": str(budget),
              "estimator": cfg.estimator, "prompts_per_step": cfg.batch_size,
              "rollouts_per_step": cfg.batch_size * cfg.rollouts_per_prompt,
              "seconds": time.perf_counter() - t, **read_run(run_dir / "metrics.jsonl")}
    for ckpt in run_dir.glob("checkpoint-*"):  # weights are not part of the result
        shutil.rmtree(ckpt, ignore_errors=True)
    (run_dir / "result.json").write_text(json.dumps(result))
    return result


def read_run(path: Path) -> dict[str, Any]:
    """Curve (every eval: step, rollouts, train_seconds, eval_accuracy), probes (per-prompt
    errors by estimator) and priors figures from a run's metrics.jsonl."""
    curve, probes, priors = [], [], {}
    for line in Path(path).read_text().splitlines():
        obj = json.loads(line)
        if obj.get("type") == "event" and obj.get("kind") == "probe":
            probes.append(obj["data"])
        if obj.get("type") != "step":
            continue
        m = obj["metrics"]
        if obj["step"] == 0:
            priors = {k.split("/")[1]: m[k] for k in ("priors/rollouts", "priors/seconds") if k in m}
        if m.get("eval/accuracy") is not None:
            curve.append({"step": obj["step"], "rollouts": m.get("rollouts/total") or 0.0,
                          "train_seconds": m.get("time/train_elapsed") or 0.0,
                          "eval_accuracy": m["eval/accuracy"]})
    return {"curve": curve, "probes": probes, "priors": priors}


# =================================================================== the study runner


def run_study(spec: Spec, out: Path, jobs: int = 1, log=print, run: bool = True
              ) -> list[dict[str, Any]]:
    """Every (arm, seed) run of `spec`, reusing finished ones whose config is unchanged
    (run=False: only the finished ones, to analyse a study that is still running)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(asdict(spec), indent=1))
    if spec.model is None:
        _base_fields(spec)  # build the demo model once, before parallel runs race to do it
    done, todo = [], []
    # Seed-major order: a study stopped early still has every arm for its first seeds.
    stale = 0
    for arm, seed in sorted(spec.runs(), key=lambda r: (r[1], list(ARMS).index(r[0]))):
        path = out / arm / f"seed{seed}" / "result.json"
        result = json.loads(path.read_text()) if path.is_file() else None
        fresh = result is not None and result.get("key") == run_key(spec, arm, seed)
        if fresh or (result is not None and not run):
            # Analysing only: a finished run counts even if TrainConfig has grown fields since.
            stale += not fresh
            done.append(result)
        else:
            todo.append((arm, seed))
    if stale:
        log(f"study: {stale} finished runs have another config key (older code); analysed as is")
    log(f"study: {len(done)} runs reused, {len(todo)} to run with {jobs} jobs")
    if not run:
        return done
    if jobs <= 1:
        for arm, seed in todo:
            done.append(run_one(asdict(spec), arm, seed, str(out)))
            log(f"  done {arm} seed {seed}")
        return done
    os.environ["OMP_NUM_THREADS"] = "1"  # children inherit it: one thread each (cli._threads)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_one, asdict(spec), a, s, str(out)): (a, s) for a, s in todo}
        for fut in futures:
            done.append(fut.result())
            log(f"  done {futures[fut][0]} seed {futures[fut][1]}")
    return done


# ======================================================================== statistics


def t_interval(values, level: float = 0.95) -> dict[str, Any]:
    """Mean and two-sided t-interval over independent values (seeds); NaNs dropped."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if x.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    if x.size == 1:
        return {"mean": float(x[0]), "low": None, "high": None, "n": 1}
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return {"mean": float(x.mean()), "low": float(x.mean() - half), "high": float(x.mean() + half),
            "n": int(x.size)}


def bootstrap_mean(values, level: float = 0.95, reps: int = 10_000, seed: int = 0) -> dict:
    """Mean and percentile-bootstrap CI of the mean (resampling the values, e.g. seeds)."""
    x = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if x.size < 2:
        return {"mean": float(x.mean()) if x.size else None, "low": None, "high": None,
                "n": int(x.size)}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (reps, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(x.mean()), "low": float(lo), "high": float(hi), "n": int(x.size)}


def paired_difference(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """a - b over the seeds both have (seed -> value): bootstrap CI, t-interval, per-seed values."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    d = [a[s] - b[s] for s in seeds]
    return {**bootstrap_mean(d), "t": t_interval(d), "seeds": seeds, "values": d}


def ratio_of_means(errors: dict[int, tuple[np.ndarray, np.ndarray]], reps: int = 4000,
                   seed: int = 0) -> dict[str, Any]:
    """mean(e_x) / mean(e_y) over paired per-prompt errors (seed -> (e_x, e_y), same prompts),
    with a two-level bootstrap CI: resample seeds, then prompt-probes within each seed."""
    seeds = [s for s in sorted(errors) if len(errors[s][0])]
    if not seeds:
        return {"ratio": None, "low": None, "high": None, "n_seeds": 0, "n_prompts": 0}
    ex = np.concatenate([errors[s][0] for s in seeds])
    ey = np.concatenate([errors[s][1] for s in seeds])
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(reps):
        num = den = 0.0
        for s in rng.choice(seeds, len(seeds)):
            x, y = errors[s]
            pick = rng.integers(0, len(x), len(x))
            num, den = num + x[pick].sum(), den + y[pick].sum()
        ratios.append(num / den if den > 0 else np.nan)  # bias-corrected errors can be <= 0
    ratios = np.array(ratios)
    lo, hi = (np.quantile(ratios[~np.isnan(ratios)], [0.025, 0.975]) if (~np.isnan(ratios)).any()
              else (None, None))
    per_seed = {int(s): _ratio(*errors[s]) for s in seeds}
    return {"ratio": _ratio(ex, ey), "low": None if lo is None else float(lo),
            "high": None if hi is None else float(hi),
            "mean_x": float(ex.mean()), "mean_y": float(ey.mean()), "n_seeds": len(seeds),
            "n_prompts": int(ex.size), "per_seed": per_seed}


def _ratio(x: np.ndarray, y: np.ndarray) -> float | None:
    return float(x.mean() / y.mean()) if y.mean() > 0 else None


def value_at(curve: list[dict], axis: str, x: float) -> float | None:
    """Eval accuracy of the last eval at or before x on `axis` (None if none is)."""
    best = None
    for point in curve:
        if point[axis] <= x + 1e-9:
            best = point["eval_accuracy"]
    return best


def time_to_target(curve: list[dict], target: float, axis: str = "train_seconds") -> float | None:
    """First x on `axis` at which eval accuracy >= target (None if never within the run)."""
    for point in curve:
        if point["eval_accuracy"] >= target - 1e-12:
            return float(point[axis])
    return None


def paired_errors(runs: list[dict], x: str, y: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """seed -> (errors of x, errors of y) over every probed prompt where both have one."""
    out = {}
    for r in runs:
        ex, ey = [], []
        for probe in r["probes"]:
            a, b = probe["errors"].get(x), probe["errors"].get(y)
            if a is None or b is None:
                continue
            for u, v in zip(a, b, strict=True):
                if u is not None and v is not None:
                    ex.append(u)
                    ey.append(v)
        out[r["seed"]] = (np.array(ex), np.array(ey))
    return out


# ========================================================================== analysis


def _by_arm(results: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (r["arm"], r["seed"])):
        out.setdefault(r["arm"], []).append(r)
    return out


def _final(run: dict, key: str = "eval_accuracy") -> float:
    return run["curve"][-1][key]


def analyse(results: list[dict], spec: Spec, command: str) -> dict[str, Any]:
    """The study JSON: per-arm summaries, value-MSE per estimator, paired comparisons, claims."""
    arms = _by_arm(results)
    target = None
    if GRPO8 in arms:
        target = float(np.mean([_final(r) for r in arms[GRPO8]]))
    summary = {}
    for name, runs in arms.items():
        ttt = [time_to_target(r["curve"], target) if target is not None else None for r in runs]
        summary[name] = {
            "about": ARMS[name].about, "estimator": runs[0]["estimator"],
            "prompts_per_step": runs[0]["prompts_per_step"],
            "rollouts_per_step": runs[0]["rollouts_per_step"], "budget": runs[0]["budget"],
            "seeds": [r["seed"] for r in runs],
            "initial_accuracy": t_interval([r["curve"][0]["eval_accuracy"] for r in runs]),
            "final_accuracy": t_interval([_final(r) for r in runs]),
            "final_accuracy_by_seed": {r["seed"]: _final(r) for r in runs},
            "steps": t_interval([_final(r, "step") for r in runs]),
            "rollouts": t_interval([_final(r, "rollouts") for r in runs]),
            "train_seconds": t_interval([_final(r, "train_seconds") for r in runs]),
            "time_to_grpo8_final": ttt,
            "value_mse": _value_mse(runs),
        }
    return {"command": command, "spec": asdict(spec), "grpo8_final_accuracy": target,
            "arms": summary, "claims": claims(arms, target, command), "runs": results}


def _value_mse(runs: list[dict]) -> dict[str, dict]:
    """estimator -> mean +- t CI over seeds of each seed's mean per-prompt error (this stream)."""
    names = sorted({n for r in runs for p in r["probes"] for n in p["errors"]})
    out = {}
    for n in names:
        per_seed = []
        for r in runs:
            errs = [e for p in r["probes"] for e in (p["errors"].get(n) or []) if e is not None]
            per_seed.append(float(np.mean(errs)) if errs else None)
        out[n] = t_interval(per_seed)
    return out


def _acc_by_seed(runs: list[dict], axis: str, x: dict[int, float]) -> dict[int, float | None]:
    """seed -> accuracy at x[seed] on `axis`, for the seeds x has (a partial study lacks some)."""
    return {r["seed"]: value_at(r["curve"], axis, x[r["seed"]]) for r in runs if r["seed"] in x}


def claims(arms: dict[str, list[dict]], target: float | None, command: str) -> list[dict]:
    """The paper's four claims, each with our number, its CI, a verdict and the rule used."""
    rows: list[dict] = []
    for method in ("basis_paper", "basis"):
        if method not in arms:
            continue
        stream = arms[method]
        a = ratio_of_means(paired_errors(stream, method, "reinforce_pp"))
        rows.append(_claim(
            "a", method, "69% lower value-MSE than REINFORCE++ (ratio <= 0.31)",
            f"value-MSE ratio {method} / reinforce_pp (same prompts, {method} arm's stream)", a,
            "ratio", holds=lambda lo, hi: lo <= 0.31 and hi < 1,
            fails=lambda lo, hi: lo > 0.31, rule="holds if the ratio's CI lies below 1 and reaches "
            "0.31 or below; does not hold if it lies above 0.31 (then 'lower' may still hold: see "
            "the number)", command=command))
        b = ratio_of_means(paired_errors(stream, method, "group_mean_8"))
        rows.append(_claim(
            "b", method, "1 rollout beats the 8-rollout group mean (ratio < 1)",
            f"value-MSE ratio {method} / group_mean_8 (same prompts and truth)", b, "ratio",
            holds=lambda lo, hi: hi < 1, fails=lambda lo, hi: lo > 1,
            rule="holds if the CI lies below 1; does not hold if above 1", command=command))
        if GRPO8 in arms and target is not None:
            rows.extend(_claim_c(method, stream, arms[GRPO8], command))
        for ref in ("rloo", "reinforce_pp"):
            if ref in arms:
                rows.append(_claim_d(method, stream, ref, arms[ref], command))
    return rows


_NEAR = 0.03  # "near" = within about one eval standard error (400 problems at p ~ 0.5: 0.025)


def _claim_c(method: str, runs: list[dict], grpo: list[dict], command: str) -> list[dict]:
    final = paired_difference({r["seed"]: _final(r) for r in runs},
                              {r["seed"]: _final(r) for r in grpo})
    secs = {r["seed"]: _final(r, "train_seconds") for r in runs}
    gsecs = {r["seed"]: _final(r, "train_seconds") for r in grpo}
    time_ratio = t_interval([secs[s] / gsecs[s] for s in sorted(set(secs) & set(gsecs))])
    quality = _claim(
        "c", method, "near GRPO-8 quality in much less time",
        f"final accuracy {method} - {GRPO8} (paired seeds; {method} used "
        f"{_fmt(time_ratio['mean'])}x GRPO-8's train-seconds)", final, "mean",
        holds=lambda lo, hi: lo >= -_NEAR, fails=lambda lo, hi: hi < -_NEAR,
        rule=f"holds if the CI lies above -{_NEAR} (near = within one eval standard error) while "
        "the time ratio is < 0.5; does not hold if the CI lies below -0.03", command=command)
    if time_ratio["mean"] is not None and time_ratio["mean"] >= 0.5 and quality["verdict"] == "holds":
        quality["verdict"] = "inconclusive"
    quality["time_ratio"] = time_ratio
    matched = paired_difference(
        {r["seed"]: _final(r) for r in runs}, _acc_by_seed(grpo, "train_seconds", secs))
    wall = _claim(
        "c", method, "at matched wall-clock, at least GRPO-8's accuracy",
        f"accuracy {method} - {GRPO8} at {method}'s final train-seconds", matched, "mean",
        holds=lambda lo, hi: lo >= -_NEAR, fails=lambda lo, hi: hi < -_NEAR,
        rule=f"holds if the CI lies above -{_NEAR}; does not hold if below", command=command)
    return [quality, wall]


def _claim_d(method: str, runs: list[dict], ref: str, ref_runs: list[dict], command: str) -> dict:
    # Matched rollouts (BASIS's offline priors included): at the reference's final rollouts.
    budget = {r["seed"]: _final(r, "rollouts") for r in ref_runs}
    diff = paired_difference(_acc_by_seed(runs, "rollouts", budget),
                             {r["seed"]: _final(r) for r in ref_runs})
    steps = paired_difference({r["seed"]: _final(r) for r in runs},
                              {r["seed"]: _final(r) for r in ref_runs})
    row = _claim(
        "d", method, f"better than single-rollout REINFORCE-type ({ref})",
        f"accuracy {method} - {ref} at matched rollouts (priors counted)", diff, "mean",
        holds=lambda lo, hi: lo > 0, fails=lambda lo, hi: hi < 0,
        rule="holds if the CI lies above 0; does not hold if below 0", command=command)
    row["at_matched_steps"] = steps
    return row


def _claim(cid, method, claim, measure, stat, key, holds, fails, rule, command) -> dict:
    est, lo, hi = stat.get(key), stat.get("low"), stat.get("high")
    t = stat.get("t")
    if t is not None and None not in (lo, hi, t["low"], t["high"]):
        # A percentile bootstrap of 3-5 seeds is too narrow; a verdict needs the t-interval too.
        lo, hi = min(lo, t["low"]), max(hi, t["high"])
    if lo is None or hi is None:
        verdict = "inconclusive"
    elif holds(lo, hi):
        verdict = "holds"
    elif fails(lo, hi):
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    n = stat.get("n_seeds", stat.get("n"))
    return {"id": cid, "method": method, "claim": claim, "measure": measure, "estimate": est,
            "low": stat.get("low"), "high": stat.get("high"), "t_low": t and t["low"],
            "t_high": t and t["high"], "n_seeds": n, "verdict": verdict, "rule": rule,
            "command": command, "detail": stat}


# ============================================================================ render


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_claims(study: dict[str, Any]) -> str:
    """Markdown: the claims table, then per-arm accuracy, generated from the study JSON."""
    lines = ["| claim | method | our number [95% CI] | seeds | verdict |", "|---|---|---|---|---|"]
    for c in study["claims"]:
        number = f"{_fmt(c['estimate'])} [{_fmt(c['low'])}, {_fmt(c['high'])}]"
        if c.get("t_low") is not None:
            number += f" (bootstrap; t: [{_fmt(c['t_low'])}, {_fmt(c['t_high'])}])"
        lines.append(f"| ({c['id']}) {c['claim']} | `{c['method']}` | {c['measure']}: {number} | "
                     f"{c['n_seeds']} | **{c['verdict']}** |")
    lines += ["", "Rules: " + "; ".join(sorted({f"({c['id']}) {c['rule']}"
                                                 for c in study["claims"]})) + ". For paired "
              "accuracy differences the verdict uses the union of the bootstrap and t intervals "
              "(a bootstrap of 3-5 seeds is too narrow on its own).", "",
              "| arm | prompts x rollouts | seeds | budget | acc start | acc final (95% t-CI) "
              "| rollouts | train s | s to GRPO-8 final acc |", "|---|---|---|---|---|---|---|---|---|"]
    for name, a in study["arms"].items():
        f = a["final_accuracy"]
        ttt = ", ".join("-" if t is None else f"{t:.0f}" for t in a["time_to_grpo8_final"])
        lines.append(
            f"| `{name}` | {a['prompts_per_step']} x {a['rollouts_per_step'] // a['prompts_per_step']}"
            f" | {len(a['seeds'])} | {a['budget']} | {_fmt(a['initial_accuracy']['mean'])} | "
            f"{_fmt(f['mean'])} [{_fmt(f['low'])}, {_fmt(f['high'])}] | "
            f"{a['rollouts']['mean']:,.0f} | {a['train_seconds']['mean']:.0f} | {ttt} |")
    lines += ["", f"Command: `{study['command']}`"]
    return "\n".join(lines)


BEGIN, END = "<!-- study:begin (generated by trainer.bench.study) -->", "<!-- study:end -->"


def update_docs(doc: Path, study: dict[str, Any]) -> None:
    """Replace the generated block of `doc` (between BEGIN and END) with `render_claims`."""
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{doc}: no generated block ({BEGIN} ... {END}) to replace")
    head, rest = text.split(BEGIN, 1)
    doc.write_text(head + BEGIN + "\n" + render_claims(study) + "\n" + END + rest.split(END, 1)[1])


# =========================================================================== figures


def _band(runs: list[dict], axis: str, grid: np.ndarray) -> tuple[np.ndarray, ...]:
    ys = np.array([[value_at(r["curve"], axis, x) for x in grid] for r in runs], dtype=float)
    stats = [t_interval(col) for col in ys.T]
    mean = np.array([s["mean"] if s["mean"] is not None else np.nan for s in stats])
    lo = np.array([s["low"] if s["low"] is not None else np.nan for s in stats])
    hi = np.array([s["high"] if s["high"] is not None else np.nan for s in stats])
    return mean, lo, hi


def figures(study: dict[str, Any], out: Path) -> list[Path]:
    """accuracy_vs_seconds.png, accuracy_vs_rollouts.png (mean and 95% t-band over seeds) and
    value_mse.png (per estimator, per policy stream, mean and 95% CI over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = _by_arm(study["runs"])
    paths = []
    for axis, label in (("train_seconds", "train seconds (rollout+reward+update, priors incl.)"),
                        ("rollouts", "rollouts (offline priors incl.)")):
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, runs in arms.items():
            end = min(r["curve"][-1][axis] for r in runs)  # every seed covers the band
            grid = np.linspace(0, end, 80)
            mean, lo, hi = _band(runs, axis, grid)
            line = ax.plot(grid, mean, label=f"{name} ({len(runs)} seeds)")[0]
            ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
        ax.set_xlabel(label)
        ax.set_ylabel("held-out greedy accuracy")
        ax.set_title("mean and 95% t-interval over seeds")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / f"accuracy_vs_{axis}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    streams = [n for n in arms if study["arms"][n]["value_mse"]]
    names = sorted({e for n in streams for e in study["arms"][n]["value_mse"]})
    width = 0.8 / max(len(streams), 1)
    for i, stream in enumerate(streams):
        vm = study["arms"][stream]["value_mse"]
        means = [vm.get(e, {}).get("mean") or np.nan for e in names]
        err = [[(m - (vm.get(e, {}).get("low") or m)) for m, e in zip(means, names, strict=True)],
               [((vm.get(e, {}).get("high") or m) - m) for m, e in zip(means, names, strict=True)]]
        ax.bar(np.arange(len(names)) + i * width, means, width, yerr=err, capsize=2,
               label=f"{stream} stream ({len(study['arms'][stream]['seeds'])} seeds)")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=20, fontsize=8)
    ax.set_ylabel("value-MSE (bias-corrected)")
    ax.set_title("value-MSE per estimator on the same probe prompts; 95% t-interval over seeds")
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(out / "value_mse.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


# ============================================================================== CLI


def smoke_spec(cache_dir: str) -> Spec:
    """Every arm, 2 seeds, 4 steps on the demo model and 400 problems (priors stay cheap):
    plumbing and statistics end to end."""
    return Spec(seeds={a: [0, 1] for a in ARMS}, budgets={a: "steps:4" for a in ARMS},
                batch_size=32, eval_every_rollouts=64, eval_size=40, probe_every=2,
                probe_prompts=4, probe_rollouts=12, n0=2, rows=400, cache_dir=cache_dir)


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in ARMS or not value:
            raise SystemExit(f"{what}: expected ARM=VALUE with ARM in {sorted(ARMS)}, got {item!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.bench study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="*", choices=sorted(ARMS), default=list(ARMS))
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--seeds-for", action="append", default=[], metavar="ARM=S,S,...")
    p.add_argument("--budget", default="steps:300", help="steps:N, rollouts:N or seconds:S")
    p.add_argument("--budget-for", action="append", default=[], metavar="ARM=KIND:N")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rows", type=int, default=4000, help="demo dataset rows")
    p.add_argument("--eval-fraction", type=float, default=0.1, help="held out of --rows")
    p.add_argument("--eval-every-rollouts", type=int, default=6400)
    p.add_argument("--probe-every", type=int, default=25)
    p.add_argument("--probe-rollouts", type=int, default=32, help="M per probe prompt (>= 10)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each")
    p.add_argument("--out", default=None, help="run directories (default runs/study[-smoke])")
    p.add_argument("--docs", default=None, help="study.json + figures (default docs/study)")
    p.add_argument("--cache-dir", default=".cache/basis")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where every run trains (cuda: the runs of --jobs share the GPU)")
    p.add_argument("--smoke", action="store_true", help="every arm, 2 seeds, 4 small steps")
    p.add_argument("--json", action="store_true", help="print the summary JSON on stdout")
    p.add_argument("--no-run", action="store_true",
                   help="analyse the runs already finished in --out (a partial study)")
    p.add_argument("--render", metavar="STUDY_JSON", help="print the claims markdown and exit")
    p.add_argument("--update-docs", metavar="MD", help="with --render: rewrite MD's study block")
    args = p.parse_args(argv)

    if args.render:
        study = json.loads(Path(args.render).read_text())
        if args.update_docs:
            update_docs(Path(args.update_docs), study)
        print(render_claims(study))
        return 0
    if args.smoke:
        spec = smoke_spec(args.cache_dir)
        out, docs = Path(args.out or "runs/study-smoke"), Path(args.docs or args.out or "runs/study-smoke")
    else:
        seeds = {a: args.seeds for a in args.arms}
        seeds.update({a: [int(s) for s in v.split(",")]
                      for a, v in _pairs(args.seeds_for, "--seeds-for").items() if a in seeds})
        budgets = {a: args.budget for a in args.arms}
        budgets.update({a: v for a, v in _pairs(args.budget_for, "--budget-for").items()
                        if a in budgets})
        for b in budgets.values():
            Budget.parse(b)
        spec = Spec(seeds=seeds, budgets=budgets, batch_size=args.batch_size, rows=args.rows,
                    eval_fraction=args.eval_fraction, probe_rollouts=args.probe_rollouts,
                    eval_every_rollouts=args.eval_every_rollouts, probe_every=args.probe_every,
                    cache_dir=args.cache_dir,
                    extra={"device": args.device} if args.device != "cpu" else {})
        out, docs = Path(args.out or "runs/study"), Path(args.docs or "docs/study")
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--no-run"]
    command = "python -m trainer.bench study " + " ".join(given)
    results = run_study(spec, out, jobs=args.jobs, log=lambda m: print(m, file=sys.stderr),
                        run=not args.no_run)
    study = analyse(results, spec, command.strip())
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "study.json").write_text(json.dumps(study, indent=1))
    figures(study, docs)
    print(render_claims(study), file=sys.stderr)
    if args.json:
        print(json.dumps({"study": str(docs / "study.json"), "arms": {
            n: {"seeds": a["seeds"], "final_accuracy": a["final_accuracy"]}
            for n, a in study["arms"].items()},
            "claims": [{k: c[k] for k in ("id", "method", "estimate", "low", "high", "verdict")}
                       for c in study["claims"]]}))
    return 0
