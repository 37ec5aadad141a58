"""Value probe: how close each estimator's baseline is to the current policy's true value.

Every `probe_every` steps the loop draws M extra rollouts on the first `probe_prompts` prompts of
the batch; their mean V_M is a Monte Carlo estimate of the true value V(x). DESIGN.md section 3:
value-MSE = mean((b - V_M)^2) - mean(var(V_M)), the second term removing the Monte Carlo noise of
V_M so the figure estimates E[(b - V)^2] without bias.

Choices:
- Every registered single-rollout estimator (min_rollouts == 1) runs as a *shadow* on every step,
  fed the same single-rollout view of the batch (the first rollout of each prompt), so stateful
  ones (BASIS's history) see the same stream as they would in training and all are compared on
  the same rewards. The shadow of the training estimator uses its options, the others defaults.
  Shadows never touch the training advantages.
- var(V_M) is estimated by the unbiased sample variance of the M rewards divided by M; for 0/1
  rewards that is V_M (1 - V_M) / (M - 1), DESIGN.md's form, and it also holds for partial credit.
  Unscorable probe rewards are dropped per prompt.
- group_mean_8 is the mean of the first 8 probe rollouts; its truth is then the mean of the *other*
  M - 8 (so b and truth are independent, as for the shadows), bias-corrected the same way. It is
  reported only when M >= 10.
- `measure` also keeps each prompt's error (`last_detail`); the loop logs it as a "probe" event,
  so value-MSE comparisons can be paired prompt by prompt (trainer.bench study).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.advantages import ESTIMATORS, AdvantageBatch, Estimator, get_estimator
from trainer.priors import TakesPriors

__all__ = ["GROUP_K", "ValueProbe", "bias_corrected_mse", "per_prompt_errors"]

GROUP_K = 8


def bias_corrected_mse(baselines: np.ndarray, rewards: np.ndarray) -> float:
    """Bias-corrected value-MSE of baselines against Monte Carlo rewards.

    baselines: (P,) b for each probe prompt (NaN = no baseline: prompt dropped).
    rewards: (P, M) probe rewards, NaN = unscorable. Prompts with < 2 scorable rewards dropped.
    Returns mean((b - V_M)^2 - s^2 / m) over kept prompts (NaN if none), where V_M, s^2, m are
    the mean, unbiased variance and count of each prompt's scorable rewards.
    """
    return _nanmean(per_prompt_errors(baselines, rewards))


def _nanmean(x: np.ndarray) -> float:
    return float(np.mean(x[~np.isnan(x)])) if (~np.isnan(x)).any() else float("nan")


def per_prompt_errors(baselines: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """(P,) bias-corrected squared error (b - V_M)^2 - s^2 / m of each probe prompt; NaN where
    the prompt is dropped (see `bias_corrected_mse`, which is their mean)."""
    b = np.asarray(baselines, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    ok = ~np.isnan(r)
    m = ok.sum(axis=1)
    keep = (m >= 2) & ~np.isnan(b)
    r0 = np.where(ok, r, 0.0)
    v = r0.sum(axis=1) / np.maximum(m, 1)
    s2 = np.where(ok, (r - v[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(m - 1, 1)
    return np.where(keep, (b - v) ** 2 - s2 / np.maximum(m, 1), np.nan)


def _first_k(rewards: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Split (P, M) rewards into the mean of the first k columns (P,) and the rest (P, M - k)."""
    head = rewards[:, :k]
    ok = ~np.isnan(head)
    mean = np.where(ok.any(axis=1), np.nansum(head, axis=1) / np.maximum(ok.sum(axis=1), 1), np.nan)
    return mean, rewards[:, k:]


class ValueProbe:
    """Shadow single-rollout estimators and the value-MSE measurement."""

    def __init__(self, estimator: str, estimator_options: dict[str, Any]):
        self.shadows: dict[str, Estimator] = {
            name: get_estimator(name, **(estimator_options if name == estimator else {}))
            for name, cls in sorted(ESTIMATORS.items())
            if cls.min_rollouts == 1
        }
        self.last_baselines: dict[str, np.ndarray] = {}
        self.last_detail: dict[str, list[float | None]] = {}

    @property
    def uses_features(self) -> bool:
        return any(e.uses_features for e in self.shadows.values())

    @property
    def needs_priors(self) -> bool:
        return any(isinstance(e, TakesPriors) for e in self.shadows.values())

    def set_priors(self, prompt_ids: list[str], priors: np.ndarray, n0: int) -> None:
        for est in self.shadows.values():
            if isinstance(est, TakesPriors):
                est.set_priors(prompt_ids, priors, n0=n0)

    def observe(self, batch: AdvantageBatch) -> None:
        """Feed one step's single-rollout batch to every shadow; keeps their baselines (n,)."""
        self.last_baselines = {n: e.compute(batch).baselines for n, e in self.shadows.items()}

    def measure(self, positions: np.ndarray, rewards: np.ndarray) -> dict[str, float]:
        """value_mse metrics for probe prompts at `positions` (P,) of the last observed batch.

        rewards: (P, M) probe rewards (NaN = unscorable).
        """
        errors = {name: per_prompt_errors(b[positions], rewards)
                  for name, b in self.last_baselines.items()}
        if rewards.shape[1] >= GROUP_K + 2:
            gm, rest = _first_k(rewards, GROUP_K)
            errors[f"group_mean_{GROUP_K}"] = per_prompt_errors(gm, rest)
        # Per prompt, so a study can pair estimators prompt by prompt (same prompts, same truth).
        self.last_detail = {name: [None if np.isnan(e) else float(e) for e in err]
                            for name, err in errors.items()}
        return {f"value_mse/{name}": _nanmean(err) for name, err in errors.items()}

    def state_dict(self) -> dict[str, Any]:
        return {n: e.state_dict() for n, e in self.shadows.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.shadows):
            raise ValueError(f"probe state for {sorted(state)}, expected {sorted(self.shadows)}")
        for n, e in self.shadows.items():
            e.load_state_dict(state[n])
