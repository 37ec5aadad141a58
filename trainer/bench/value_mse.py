"""Value-MSE benchmark: how close each estimator's baseline b_i is to the true value V_t(x_i).

    python -m trainer.bench value-mse                      # whole built-in suite, tables + medians
    python -m trainer.bench value-mse --scenario F.npz --json
    python -m trainer.bench value-mse --write-scenario hard_fast hard_fast.npz
    python -m trainer.bench value-mse --ablation           # BASIS variants side by side
    python -m trainer.bench value-mse --n0 16              # override offline rollouts per prompt
    python -m trainer.bench value-mse --bound              # first visits vs an oracle bound

Protocol (DESIGN.md section 3): n0 offline rollouts per prompt from `ref_value` give the BASIS
priors; then for each step, `batch_size` distinct prompts, a (B, k_max) matrix of rewards. Single-
rollout estimators all see column 0 and group_mean_k sees columns 0..k-1 (common random numbers,
so differences between estimators are not sampling noise between them). Estimators are fed in step
order and keep their state. MSE = mean over every step and sampled prompt of (b - V)^2, against the
exact V of the simulation (for partial credit, V is the expected reward).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.advantages import AdvantageBatch, Basis, estimate_priors, get_estimator
from trainer.bench.scenarios import (
    BUILTIN,
    FEATURED,
    Scenario,
    load_scenario,
    make_featured,
    make_scenario,
    save_scenario,
)


@dataclass(frozen=True)
class Variant:
    """One column of the table: a registered estimator with options and k rollouts per prompt."""

    label: str
    estimator: str
    k: int = 1
    options: dict[str, Any] = field(default_factory=dict)


DEFAULT_VARIANTS = (
    Variant("reinforce_pp", "reinforce_pp"),
    Variant("basis", "basis"),
    Variant("group_mean_4", "group_mean", k=4),
    Variant("group_mean_8", "group_mean", k=8),
)

CROSS_VARIANT = Variant("basis[cross]", "basis", options={"cross_prompt": True})

ABLATION_VARIANTS = (
    Variant("reinforce_pp", "reinforce_pp"),
    # b = p(x): c pinned at 0 by an overwhelming pull towards the previous c (0)
    Variant("prior only", "basis_paper", options={"c_prior_strength": 1e12}),
    Variant("basis", "basis"),
    Variant("basis[history=off]", "basis", options={"history": False}),
    Variant("basis[paper]", "basis", options={"history": False, "c_prior_strength": 0.0}),
    Variant("basis[drift=0.01]", "basis", options={"history_drift": 0.01}),
    Variant("basis[drift=0.03]", "basis", options={"history_drift": 0.03}),
    Variant("basis[kappa=0]", "basis", options={"c_prior_strength": 0.0}),
    Variant("basis[eps=0]", "basis", options={"eps": 0.0}),
    Variant("basis[eb]", "basis", options={"prior_shrinkage": "empirical_bayes"}),
    CROSS_VARIANT,
    Variant("group_mean_8", "group_mean", k=8),
)


def _draw(rng: np.random.Generator, v: np.ndarray, levels: int, size: tuple[int, ...]):
    """Rewards with mean v: Binomial(levels, v) / levels (levels = 1: Bernoulli)."""
    return rng.binomial(levels, np.broadcast_to(v, size)) / levels


def _simulate(sc: Scenario, variants: Sequence[Variant]):
    """Run the protocol; yield (t, idx (B,), value (B,), baselines (len(variants), B), ref_sum (N,)).

    Deterministic given `sc.seed`. ref_sum is each prompt's sum of offline rewards (n0 of them).
    """
    rng = np.random.default_rng(sc.seed)
    t_steps, n = sc.true_value.shape
    ids = np.char.add("p", np.arange(n).astype(str))
    ref = _draw(rng, sc.ref_value[:, None], sc.reward_levels, (n, sc.n0)) if sc.n0 else None
    ref_sum = ref.sum(axis=1) if ref is not None else np.zeros(n)
    priors = estimate_priors(ref_sum, sc.n0)
    estimators = []
    for v in variants:
        est = get_estimator(v.estimator, **v.options)
        if isinstance(est, Basis) and sc.n0 > 0:
            est.set_priors(ids, priors, n0=sc.n0)
        estimators.append(est)
    k_max = max(v.k for v in variants)
    for t in range(t_steps):
        idx = rng.choice(n, size=sc.batch_size, replace=False)
        value = sc.true_value[t, idx]  # (B,)
        rewards = _draw(rng, value[:, None], sc.reward_levels, (idx.size, k_max))  # (B, k_max)
        b = np.empty((len(variants), idx.size))
        for j, (v, est) in enumerate(zip(variants, estimators, strict=True)):
            feats = None if sc.features is None else np.repeat(sc.features[idx], v.k, axis=0)
            batch = AdvantageBatch(rewards[:, : v.k].reshape(-1), np.repeat(ids[idx], v.k), feats)
            b[j] = est.compute(batch).baselines.reshape(idx.size, v.k)[:, 0]
        yield t, idx, value, b, ref_sum


def run_scenario(sc: Scenario, variants: Sequence[Variant] = DEFAULT_VARIANTS) -> dict[str, float]:
    """Value-MSE of every variant on one scenario; deterministic given `sc.seed`."""
    sq = np.zeros(len(variants))
    for _, _, value, b, _ in _simulate(sc, variants):
        sq += np.sum((b - value[None, :]) ** 2, axis=1)
    mse = sq / (sc.true_value.shape[0] * sc.batch_size)
    return {v.label: float(m) for v, m in zip(variants, mse, strict=True)}


def first_visit_bound(
    sc: Scenario, variants: Sequence[Variant] = DEFAULT_VARIANTS
) -> dict[str, Any]:
    """How well *any* single-rollout estimator can do on a prompt's first online visit.

    Before a prompt's first visit, all a single-rollout estimator knows about it is its offline
    reference rewards; everything else it can learn (c_t, the difficulty mix) is shared by every
    prompt with the same reference outcome. The best such estimate is the population mean
    E[V_t(x) | s(x) = s] over all prompts with the same reference-reward sum s, which the
    simulation knows exactly (an oracle no estimator can beat). Returns the share of first-visit
    samples, each variant's MSE on them, and the oracle's (`bound`).
    """
    n = sc.true_value.shape[1]
    seen = np.zeros(n, dtype=bool)
    sq = np.zeros(len(variants))
    sq_bound = 0.0
    count = 0
    total = 0
    for t, idx, value, b, ref_sum in _simulate(sc, variants):
        first = ~seen[idx]
        seen[idx] = True
        total += idx.size
        if not first.any():
            continue
        levels, group = np.unique(ref_sum, return_inverse=True)
        cond_mean = np.bincount(group, weights=sc.true_value[t], minlength=levels.size)
        cond_mean /= np.bincount(group, minlength=levels.size)
        sq += np.sum((b[:, first] - value[first][None, :]) ** 2, axis=1)
        sq_bound += float(np.sum((cond_mean[group[idx[first]]] - value[first]) ** 2))
        count += int(first.sum())
    mse = {v.label: float(s / max(count, 1)) for v, s in zip(variants, sq, strict=True)}
    return {
        "scenario": sc.name,
        "first_visit_share": count / max(total, 1),
        "mse_first_visit": mse,
        "bound": sq_bound / max(count, 1),
    }


def report(name: str, mse: dict[str, float]) -> dict[str, Any]:
    """The JSON object of DESIGN.md section 3."""
    base = mse.get("reinforce_pp")
    ratio = {k: (v / base if base else float("nan")) for k, v in mse.items()}
    return {"scenario": name, "mse": mse, "ratio_to_reinforce_pp": ratio}


def _table(rep: dict[str, Any], sc: Scenario) -> str:
    gm8 = rep["mse"].get("group_mean_8")
    lines = [
        f"scenario {rep['scenario']}: {sc.description or '(file)'}  "
        f"[N={sc.true_value.shape[1]}, B={sc.batch_size}, T={sc.true_value.shape[0]}, "
        f"epochs={sc.epochs:.1f}, n0={sc.n0}, reward_levels={sc.reward_levels}]",
        f"  {'estimator':<22}{'value-MSE':>11}{'/ reinforce_pp':>16}{'/ group_mean_8':>16}",
    ]
    for k, v in rep["mse"].items():
        r8 = f"{v / gm8:16.3f}" if gm8 else f"{'-':>16}"
        lines.append(f"  {k:<22}{v:11.5f}{rep['ratio_to_reinforce_pp'][k]:16.3f}{r8}")
    return "\n".join(lines)


def _median_ratios(reps: list[dict[str, Any]], ref: str) -> dict[str, float]:
    keys = reps[0]["mse"].keys()
    return {
        k: float(np.median([r["mse"][k] / r["mse"][ref] for r in reps]))
        for k in keys
        if all(r["mse"].get(ref) for r in reps)
    }


def _summary(reps: list[dict[str, Any]]) -> str:
    keys = list(reps[0]["mse"])
    head = f"{'scenario':<16}" + "".join(f"{k:>{max(len(k) + 2, 12)}}" for k in keys)
    rows = [head]
    for r in reps:
        rows.append(
            f"{r['scenario']:<16}"
            + "".join(f"{r['mse'][k]:>{max(len(k) + 2, 12)}.5f}" for k in keys)
        )
    for ref in ("reinforce_pp", "group_mean_8"):
        if ref in keys:
            med = _median_ratios(reps, ref)
            rows.append(
                f"{'median /' + ref[:7]:<16}"
                + "".join(f"{med[k]:>{max(len(k) + 2, 12)}.3f}" for k in keys)
            )
    return "\n".join(rows)


def _bound_table(bounds: list[dict[str, Any]]) -> str:
    keys = list(bounds[0]["mse_first_visit"])
    head = f"{'scenario':<16}{'first visits':>14}{'bound':>10}" + "".join(
        f"{k:>{max(len(k) + 2, 12)}}" for k in keys
    )
    rows = ["value-MSE on first online visits (bound: oracle mean given the reference rewards)", head]
    for b in bounds:
        rows.append(
            f"{b['scenario']:<16}{b['first_visit_share']:>14.3f}{b['bound']:>10.5f}"
            + "".join(
                f"{b['mse_first_visit'][k]:>{max(len(k) + 2, 12)}.5f}" for k in keys
            )
        )
    if "group_mean_8" in keys:
        rows.append("bound / group_mean_8 on first visits:")
        rows.extend(
            f"  {b['scenario']:<16}{b['bound'] / b['mse_first_visit']['group_mean_8']:.3f}"
            for b in bounds
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m trainer.bench value-mse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--scenario", help="scenario .npz file (DESIGN.md section 3 format)")
    ap.add_argument(
        "--builtin",
        action="append",
        choices=list(BUILTIN),
        help="run only this built-in scenario (repeatable)",
    )
    ap.add_argument(
        "--write-scenario",
        nargs=2,
        metavar=("NAME", "FILE"),
        help="save built-in scenario NAME to FILE.npz and exit",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed for generating built-ins")
    ap.add_argument(
        "--suite",
        choices=["builtin", "featured"],
        default="builtin",
        help="builtin: the nine logit-shift scenarios; featured: drift that is not a logit "
        "shift, with per-prompt features (adds a basis[cross] column)",
    )
    ap.add_argument("--ablation", action="store_true", help="compare BASIS variants")
    ap.add_argument(
        "--bound",
        action="store_true",
        help="first online visits only: each estimator next to the best any single-rollout "
        "estimator can do there (oracle population mean given the reference rewards)",
    )
    ap.add_argument("--n0", type=int, help="override the scenarios' offline rollouts per prompt")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args(argv)

    if args.write_scenario:
        name, path = args.write_scenario
        try:
            save_scenario(path, make_scenario(name, args.seed))
        except ValueError as e:
            ap.error(str(e))
        print(f"wrote {path}")
        return 0

    variants = ABLATION_VARIANTS if args.ablation else DEFAULT_VARIANTS
    if args.scenario:
        scenarios = [load_scenario(args.scenario)]
    elif args.suite == "featured":
        scenarios = [make_featured(n, args.seed) for n in FEATURED]
        if not args.ablation:
            variants = (*DEFAULT_VARIANTS, CROSS_VARIANT)
    else:
        scenarios = [make_scenario(n, args.seed) for n in (args.builtin or BUILTIN)]
    if any(sc.features is None for sc in scenarios):  # the cross-prompt term needs features
        variants = tuple(v for v in variants if v is not CROSS_VARIANT)
    if args.n0 is not None:
        for sc in scenarios:
            sc.n0 = args.n0
    if args.bound:
        bounds = [first_visit_bound(sc, variants) for sc in scenarios]
        if args.json:
            json.dump(bounds if len(bounds) > 1 else bounds[0], sys.stdout, indent=2)
            print()
        else:
            print(_bound_table(bounds))
        return 0
    reps = [report(sc.name, run_scenario(sc, variants)) for sc in scenarios]

    if args.json:
        if len(reps) == 1:
            out: dict[str, Any] = reps[0]
        else:
            out = {
                "scenarios": reps,
                "median_ratio_to_reinforce_pp": _median_ratios(reps, "reinforce_pp"),
                "median_ratio_to_group_mean_8": _median_ratios(reps, "group_mean_8"),
            }
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    for rep, sc in zip(reps, scenarios, strict=True):
        print(_table(rep, sc), end="\n\n")
    if len(reps) > 1:
        print(_summary(reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
