"""Advantage estimators: one registry, one signature `compute(AdvantageBatch) -> AdvantageResult`.

Numpy float64 in and out, no IO, no Python loop over samples (grouping uses np.unique/bincount).

Estimators (DESIGN.md section 3):
- `reinforce_pp`: baseline = mean of the batch's scorable rewards; advantages divided by the batch
  std (REINFORCE++ whitening; centred already since the baseline is the mean).
- `rloo_batch`: 1 rollout per prompt, baseline = mean of the batch's *other* scorable rewards
  (leave-one-out), no normalisation: single-rollout REINFORCE with an unbiased batch baseline.
- `grpo`: baseline = group mean; advantages divided by the group std (ddof=1, as TRL) + eps.
- `dr_grpo`: baseline = group mean; no normalisation.
- `rloo`: baseline = mean of the *other* scorable rewards of the group (leave-one-out).
- `group_mean`: the k-rollout group mean, including the sample's own reward. It is the
  multi-rollout reference for value-MSE comparisons (`group_mean_8` in benchmarks); as a training
  estimator it equals `dr_grpo`.
- `basis`: b_i = sigmoid(logit p(x_i) + c_hat_{-i}) (below).

Common rules: unscorable rewards (NaN; `None` in a list becomes NaN) enter no baseline and get
advantage 0. Group estimators refuse prompts with fewer than 2 rollouts. Where a leave-one-out
baseline has no other scorable reward to use (rloo with every other rollout unscorable, basis for a
prompt without a prior), it falls back to the mean of the batch's *other* scorable rewards, and to
0.5 if there are none; this keeps b_i independent of r_i.

BASIS as implemented (deliberate choices, see docs/benchmarks.md for their measured effect):
- Fit of c: Bernoulli (cross-entropy) likelihood of the batch rewards under
  sigmoid(z_j + c), z_j = logit of the prompt's prior. Partial-credit rewards are fractional
  targets (quasi-likelihood). The likelihood weights each prompt by its Fisher information
  sigmoid'(z_j + c) automatically, so no extra weights are applied.
- Leave-one-out for every i at once: the objective is convex in c. It is evaluated on a fixed
  lattice (step 0.01 on [-c_range, c_range]): L(c_g) = sum_j l_j(c_g) once, then
  L_{-i}(c_g) = L(c_g) - l_i(c_g) for all i, the lattice argmin per row, and a parabola through
  the three lattice points around it. Only the lattice points inside a window that provably holds
  every minimiser are evaluated: each |l_i'| <= 1, so every LOO minimiser lies where
  -1 <= L'(c) <= 1, an interval found by bisection on L' (width ~ 2 / Fisher information of the
  batch: a few lattice points at n = 4096, more for small batches). Because the lattice is fixed
  and the window only decides which of its points are looked at, c_hat_{-i} does not depend on
  r_i. Cost O(n * (bisection rounds + window points)).
- Active set: samples whose current prior (reference frame) lies within `eps` (0.02) of 0 or 1 are
  left out of the fit (little information, and their prior is the most biased); they still get a
  baseline sigmoid(logit p + c_hat). With n0 = 8 no Jeffreys prior is that extreme (min 1/18), so
  the set bites on larger n0 and on priors the history pushed to the edges; eps = 0 and 0.06
  measure within noise of each other (docs/benchmarks.md).
- `c_prior_strength` (kappa, default 20): penalty kappa/2 (c - c_prev)^2 towards the previous
  step's full-batch c (0 before the first step). c_prev does not depend on this batch, so
  leave-one-out unbiasedness holds. kappa is in Fisher-information units (a prompt at V = 0.5
  carries 1/4, so 20 ~ 80 coin flips): negligible against a batch of 256 prompts, decisive for a
  batch of 16, where it halves the value-MSE.
- `prior_shrinkage="empirical_bayes"` (option, off): replace Jeffreys' Beta(1/2, 1/2) by a Beta
  fitted to the population of priors (method of moments), i.e. shrink each prompt towards the
  dataset's difficulty distribution. Helps narrow difficulty mixes, hurts partial credit (the
  binomial-noise correction assumes pass/fail rewards); default off as DESIGN.md fixes Jeffreys.
- Prompts without a prior: the leave-one-out batch mean (`fallback="loo_mean"`) or sigmoid(c_hat)
  as if p=0.5 (`fallback="half"`). Default loo_mean: the population average is a better guess for an
  unknown prompt than the calibrated value of a coin flip, and it is unbiased.
- History (DESIGN.md 3.4): each prompt keeps a Gaussian belief N(m, 1/lambda) on its reference-frame
  logit, started at m = logit p, lambda = (n0 + 1) p (1 - p) (the Fisher information of its n0
  reference rollouts). After each step, every scored prompt is updated with one Laplace/Newton step
  in the calibrated frame: V = sigmoid(m + c_t), lambda <- 1/(1/lambda + q * dt) + sum V(1-V),
  m <- m + sum(r - V) / lambda. The process noise q (`history_drift`, default 0.003 logit variance
  per step since the prompt was last seen) discounts old evidence, so prompt-specific drift is
  tracked. On by default: it is what brings BASIS close to (or under) the 8-rollout group mean. Only past
  steps enter, so the current b_i never sees r_i. Prompts without a prior start an entry when first
  scored, at m = logit(batch mean) - c_t with lambda = 0.5 (about two coin flips of evidence).
- Cross-prompt term (DESIGN.md 3.5; `cross_prompt`, option, off): a local calibration offset
  delta_i added to the logit, predicted from the residuals of prompts whose features
  (AdvantageBatch.features, the loop's mean-pooled last hidden state of the prompt) are close:
  w_ij = exp((cos(f_i, f_j) - 1) / tau) on features centred on the batch mean,
  delta_i = g * sum_j w_ij (r_j - v_ij) / (lambda + sum_j w_ij v_ij (1 - v_ij)), j != i,
  v_ij = sigmoid(z_j + c_hat_{-i}): one Newton step for an offset with prior N(0, 1/lambda), i.e.
  a kernelised c (KAE, arXiv:2604.28005, borrows strength the same way). It reads no r_i (w_ii = 0,
  c_hat_{-i} is leave-one-out), so b_i stays exactly leave-one-out. Past steps can add their
  residuals (`cross_memory` steps, weight `cross_decay` per step of age; a prompt's own past is
  left out, it is in its history). The gain g is fitted online on past steps only (weighted least
  squares of the realised residuals on h * delta, decayed by `cross_decay`, weak pull to 1, clipped
  to [0, 3]), so where the kernel's predictions do not come true g falls and the term fades (the
  `sharpen` scenario: +1%, against +5% for a first version with g fixed at 1 and lambda = 1);
  logged as `basis/cross_gain`. Off by default: on real runs it gains 0-1.4% (docs/benchmarks.md
  "Value-MSE on real runs"), within noise, and needs a feature pass per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from scipy.special import expit, logit

from trainer.priors import estimate_priors, load_priors, priors_from_rewards, save_priors
from trainer.registry import NoOptions, Registry

__all__ = [
    "ESTIMATORS",
    "AdvantageBatch",
    "AdvantageResult",
    "Basis",
    "BasisPaper",
    "Estimator",
    "estimate_priors",
    "get_estimator",
    "load_priors",
    "priors_from_rewards",
    "register_estimator",
    "save_priors",
]


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class AdvantageBatch:
    """One step's samples. Validated and converted on construction.

    rewards: (n,) float in [0, 1]; NaN (or None in a list) = unscorable.
    prompt_ids: (n,) str; the k rollouts of one prompt share an id.
    features: (n, d) float or None: a per-sample description of the prompt that the policy
        already computes (the loop's prompt-feature pass: mean-pooled last hidden state). Only
        estimators with `uses_features` read it; the others ignore it.
    """

    rewards: np.ndarray
    prompt_ids: np.ndarray
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            r = np.asarray(self.rewards, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"rewards must be numbers in [0, 1] or None/NaN: {e}") from e
        ids = np.asarray(self.prompt_ids)
        if r.ndim != 1 or ids.ndim != 1:
            raise ValueError(
                f"rewards and prompt_ids must be 1-D, got shapes {r.shape} and {ids.shape}"
            )
        if r.shape != ids.shape:
            raise ValueError(
                f"rewards ({r.shape[0]}) and prompt_ids ({ids.shape[0]}) must have the same length"
            )
        if r.shape[0] == 0:
            raise ValueError("empty batch: an advantage batch needs at least one sample")
        bad = ~np.isnan(r) & ~((r >= 0.0) & (r <= 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"rewards must lie in [0, 1] (NaN = unscorable); reward[{i}] = {float(r[i])!r}"
                f" ({int(bad.sum())} out of range). Rescale the reward function's output."
            )
        object.__setattr__(self, "rewards", r)
        object.__setattr__(self, "prompt_ids", ids.astype(str))
        if self.features is not None:
            f = np.asarray(self.features, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] != r.shape[0]:
                raise ValueError(
                    f"features must be (n, d) with n = {r.shape[0]} samples, got shape {f.shape}"
                )
            if not np.isfinite(f).all():
                raise ValueError("features must be finite (no NaN or inf)")
            object.__setattr__(self, "features", f)

    def subset(self, index: np.ndarray) -> AdvantageBatch:
        """The samples at `index` (features included)."""
        f = None if self.features is None else self.features[index]
        return AdvantageBatch(self.rewards[index], self.prompt_ids[index], f)


@dataclass(frozen=True)
class AdvantageResult:
    """baselines: (n,) b_i (NaN only where unscorable); advantages: (n,) A_i, 0 where unscorable."""

    baselines: np.ndarray
    advantages: np.ndarray
    info: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------- registry

ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")


def register_estimator(name: str):
    """Class decorator adding an Estimator subclass under `name`; a taken name is an error."""

    def deco(cls: type[Estimator]) -> type[Estimator]:
        ESTIMATORS.add(name, cls)
        cls.name = name
        return cls

    return deco


def get_estimator(name: str, **options: Any) -> Estimator:
    """Instantiate a registered estimator; an unknown name lists the valid ones."""
    return ESTIMATORS.lookup(name)(**options)


class Estimator:
    """Base class. Subclasses set `Options` (pydantic, extra fields forbidden) and `compute`."""

    name: ClassVar[str] = ""
    min_rollouts: ClassVar[int] = 1
    Options: ClassVar[type[BaseModel]] = NoOptions

    @property
    def uses_features(self) -> bool:
        """Whether `compute` reads `batch.features` (the loop computes them only if so)."""
        return False

    def __init__(self, **options: Any) -> None:
        try:
            self.options = self.Options(**options)
        except ValidationError as e:
            fields = ", ".join(self.Options.model_fields) or "none"
            raise ValueError(f"estimator {self.name!r}: {e}\nvalid options: {fields}") from e

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(
                f"estimator {self.name!r} is stateless; got state keys {sorted(state)}"
            )


# ---------------------------------------------------------------------------- helpers


def _loo_batch_mean(r: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(n,) mean of the *other* scorable rewards of the batch; 0.5 where there are none."""
    total, count = np.where(ok, r, 0.0).sum(), ok.sum()
    other = count - ok.astype(np.int64)
    s = total - np.where(ok, r, 0.0)
    return np.where(other > 0, s / np.maximum(other, 1), 0.5)


def _groups(ids: np.ndarray, r: np.ndarray, ok: np.ndarray):
    """Group statistics: (inverse (n,), size (G,), scorable count (G,), scorable sum (G,))."""
    _, inv, size = np.unique(ids, return_inverse=True, return_counts=True)
    cnt = np.bincount(inv, weights=ok.astype(np.float64), minlength=size.size)
    tot = np.bincount(inv, weights=np.where(ok, r, 0.0), minlength=size.size)
    return inv, size, cnt, tot


def _finish(r: np.ndarray, ok: np.ndarray, b: np.ndarray, scale: np.ndarray | float = 1.0):
    return np.where(ok, (r - np.where(ok, b, 0.0)) / scale, 0.0)


# --------------------------------------------------------------------- single rollout


class _ReinforceOptions(NoOptions):
    normalize: bool = Field(True, description="divide advantages by the batch reward std")
    eps: float = Field(1e-6, gt=0, description="added to the std")


@register_estimator("reinforce_pp")
class ReinforcePP(Estimator):
    """REINFORCE++: global batch-mean baseline, advantages whitened by the batch std."""

    Options = _ReinforceOptions
    options: _ReinforceOptions

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:
        r = batch.rewards
        ok = ~np.isnan(r)
        mean = r[ok].mean() if ok.any() else 0.5
        std = r[ok].std() if ok.sum() > 1 else 0.0
        b = np.full_like(r, mean)
        scale = std + self.options.eps if self.options.normalize else 1.0
        return AdvantageResult(b, _finish(r, ok, b, scale), {"reinforce_pp/std": float(std)})


@register_estimator("rloo_batch")
class RLOOBatch(Estimator):
    """Single-rollout REINFORCE with a leave-one-out batch-mean baseline: b_i = mean of the *other*
    scorable rewards of the batch (0.5 if none), no normalisation. The unbiased single-rollout
    REINFORCE-type baseline (RLOO's leave-one-out applied across prompts, k = 1), the reference for
    the paper's claim (d)."""

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:
        r = batch.rewards
        ok = ~np.isnan(r)
        b = _loo_batch_mean(r, ok)
        return AdvantageResult(np.where(ok, b, np.nan), _finish(r, ok, b))


# ---------------------------------------------------------------------------- groups


class _GroupEstimator(Estimator):
    min_rollouts = 2

    def _stats(self, batch: AdvantageBatch):
        r = batch.rewards
        ok = ~np.isnan(r)
        inv, size, cnt, tot = _groups(batch.prompt_ids, r, ok)
        if size.min() < 2:
            g = int(np.argmin(size))
            pid = str(batch.prompt_ids[np.flatnonzero(inv == g)[0]])
            raise ValueError(
                f"estimator {self.name!r} needs k >= 2 rollouts per prompt, but prompt {pid!r} "
                f"has {int(size[g])} ({int((size < 2).sum())} prompts with k < 2). Set "
                f"rollouts_per_prompt >= 2, or use a single-rollout estimator "
                f"('basis' or 'reinforce_pp')."
            )
        mean = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
        return r, ok, inv, cnt, tot, mean


class _GroupOptions(NoOptions):
    eps: float = Field(1e-6, gt=0, description="added to the group std")


@register_estimator("grpo")
class GRPO(_GroupEstimator):
    """GRPO: group-mean baseline, advantages divided by the group std (ddof=1) + eps."""

    Options = _GroupOptions
    options: _GroupOptions

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:
        r, ok, inv, cnt, tot, mean = self._stats(batch)
        dev2 = np.where(ok, (r - mean[inv]) ** 2, 0.0)
        ss = np.bincount(inv, weights=dev2, minlength=cnt.size)
        std = np.sqrt(ss / np.maximum(cnt - 1, 1))
        b = mean[inv]
        return AdvantageResult(b, _finish(r, ok, b, std[inv] + self.options.eps))


@register_estimator("dr_grpo")
class DrGRPO(_GroupEstimator):
    """Dr. GRPO: group-mean baseline, no std normalisation."""

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:
        r, ok, inv, _, _, mean = self._stats(batch)
        b = mean[inv]
        return AdvantageResult(b, _finish(r, ok, b))


@register_estimator("group_mean")
class GroupMean(DrGRPO):
    """k-rollout group mean (own reward included): the multi-rollout value-MSE reference.

    The same computation as Dr. GRPO; registered under its own name so the value-MSE tables and
    the probe name the reference for what it is."""


@register_estimator("rloo")
class RLOO(_GroupEstimator):
    """RLOO: baseline = mean of the other scorable rewards of the same prompt."""

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:
        r, ok, inv, cnt, tot, mean = self._stats(batch)
        other = cnt[inv] - ok
        own = np.where(ok, r, 0.0)
        b = np.where(other > 0, (tot[inv] - own) / np.maximum(other, 1), np.nan)
        # No other scorable rollout of this prompt: fall back without using r_i.
        b = np.where(ok & (other == 0), _loo_batch_mean(r, ok), b)
        b = np.where(~ok, mean[inv], b)
        return AdvantageResult(b, _finish(r, ok, b))


# ----------------------------------------------------------------------------- BASIS

_FINE_STEP = 0.01
_BISECTIONS = 14
_NEW_PROMPT_PRECISION = 0.5
_GAIN_PRIOR = 1.0  # pull of the cross-prompt gain towards 1, in units of sum h delta^2
_GAIN_MAX = 3.0


class BasisOptions(NoOptions):
    normalize: Literal["none", "batch_std"] = Field(
        "none", description="divide advantages by the batch std of scorable advantages"
    )
    eps: float = Field(
        0.02, ge=0, lt=0.5, description="priors within eps of 0 or 1 are left out of the c fit"
    )
    c_range: float = Field(12.0, gt=0, description="c is searched in [-c_range, c_range]")
    c_prior_strength: float = Field(
        20.0, ge=0, description="kappa: penalty kappa/2 (c - previous c)^2 (Fisher-info units)"
    )
    fallback: Literal["loo_mean", "half"] = Field(
        "loo_mean", description="baseline of prompts with no prior: LOO batch mean or sigmoid(c)"
    )
    history: bool = Field(True, description="update each prompt's prior with its own rewards")
    history_drift: float = Field(
        0.003, ge=0, description="logit variance added per step since a prompt was last seen"
    )
    norm_eps: float = Field(1e-6, gt=0, description="added to the std when normalising")
    cross_prompt: bool = Field(
        False,
        description="add a local calibration offset predicted from the residuals of prompts "
        "with similar features (needs AdvantageBatch.features)",
    )
    cross_bandwidth: float = Field(
        0.1, gt=0, description="tau: kernel weight exp((cos(f_i, f_j) - 1) / tau)"
    )
    cross_strength: float = Field(
        4.0, gt=0, description="lambda: prior precision of the local offset (Fisher-info units)"
    )
    cross_memory: int = Field(
        0, ge=0, le=64, description="past steps whose residuals also enter the cross-prompt term"
    )
    cross_decay: float = Field(
        0.7, gt=0, le=1, description="weight of a past step's residuals per step of age"
    )
    prior_shrinkage: Literal["jeffreys", "empirical_bayes"] = Field(
        "jeffreys",
        description="Beta prior behind each prompt's prior: Jeffreys (DESIGN.md) or fitted to "
        "the population of priors (assumes pass/fail reference rewards)",
    )


def _lattice(lo: float, hi: float, step: float) -> np.ndarray:
    """Points of the fixed lattice step*Z lying in [lo, hi] (independent of the batch)."""
    return np.arange(np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9) + 1) * step


def _nll(z: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(n, G) Bernoulli cross-entropy of target r under sigmoid(z + c)."""
    x = z[:, None] + c[None, :]
    return np.logaddexp(0.0, x) - r[:, None] * x


def _loo_argmin(
    z: np.ndarray, r: np.ndarray, grid: np.ndarray, penalty: np.ndarray, with_full: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index of the minimiser of every leave-one-out objective.

    z, r: (m,) active samples. grid: (G,). penalty: (G,).
    Returns (idx (m,) of argmin_g [L(g) - l_i(g)], objective matrix (m + with_full, G));
    with_full appends the full-batch objective L as the last row.
    """
    loss = _nll(z, r, grid)  # (m, G)
    total = loss.sum(axis=0) + penalty  # (G,)
    obj = total[None, :] - loss
    if with_full:
        obj = np.vstack([obj, total[None, :]])
    return np.argmin(obj, axis=1), obj


def _loo_window(
    z: np.ndarray, r: np.ndarray, kappa: float, c_prev: float, c_range: float
) -> tuple[float, float]:
    """An interval [lo, hi] holding the full-batch and every leave-one-out minimiser of c.

    z, r: (m,) active samples. With L'(c) = sum_j (sigmoid(z_j + c) - r_j) + kappa (c - c_prev),
    the minimiser of L - l_i solves L'(c) = l_i'(c), and |l_i'| <= 1, so it lies where
    -1 <= L'(c) <= 1. L' is increasing (convexity), so both ends come from one vectorised
    bisection (2 evaluations of L' per round, O(m) each), kept on the conservative side.
    """
    a = np.full(2, -c_range)
    b = np.full(2, c_range)
    target = np.array([-1.0, 1.0])
    for _ in range(_BISECTIONS):
        mid = 0.5 * (a + b)
        grad = (expit(z[:, None] + mid[None, :]) - r[:, None]).sum(axis=0)
        grad += kappa * (mid - c_prev)
        right = grad < target
        a = np.where(right, mid, a)
        b = np.where(right, b, mid)
    return float(a[0]), float(b[1])


def _parabola(obj: np.ndarray, idx: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Refine lattice minimisers with a parabola through the three neighbouring points."""
    rows = np.arange(obj.shape[0])
    inner = (idx > 0) & (idx < grid.size - 1)
    j = np.clip(idx, 1, grid.size - 2)
    f0, f1, f2 = obj[rows, j - 1], obj[rows, j], obj[rows, j + 1]
    curv = f0 - 2.0 * f1 + f2
    off = np.where(inner & (curv > 0), 0.5 * (f0 - f2) / np.where(curv > 0, curv, 1.0), 0.0)
    step = grid[1] - grid[0] if grid.size > 1 else 0.0
    return grid[idx] + np.clip(off, -0.5, 0.5) * step


def _beta_moments(frac: np.ndarray, n0: int) -> tuple[float, float]:
    """Population Beta(a, b) of success rates from observed fractions frac = s / n0 (N,).

    Method of moments with the binomial noise removed: var(frac) = mu (1 - mu) (1/n0 + (1 -
    1/n0) rho), rho = 1 / (a + b + 1). Clipped so the prior stays proper and not too sharp.
    """
    mu = float(np.clip(frac.mean(), 0.01, 0.99))
    ratio = float(frac.var()) / (mu * (1.0 - mu))
    rho = float(np.clip((ratio - 1.0 / n0) / (1.0 - 1.0 / n0), 0.02, 0.95))
    tot = 1.0 / rho - 1.0
    return mu * tot, (1.0 - mu) * tot


@register_estimator("basis")
class Basis(Estimator):
    """BASIS: one rollout per prompt; baseline sigmoid(logit p(x_i) + c_hat_{-i}), c fitted on the batch."""

    Options = BasisOptions
    options: BasisOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._ids = np.array([], dtype=str)  # sorted, unique prompt ids with a prior/history
        self._mean = np.array([], dtype=np.float64)  # logit prior (reference frame)
        self._prec = np.array([], dtype=np.float64)  # precision of that logit
        self._last = np.array([], dtype=np.int64)  # step at which the precision was last updated
        self._step = 0
        self._c_prev = 0.0
        self._mem_f = np.zeros((0, 0))  # cross-prompt memory: features (K, d) of past samples,
        self._mem_id = np.array([], dtype=str)  # their prompt ids,
        self._mem_g = np.array([], dtype=np.float64)  # residuals r - v,
        self._mem_h = np.array([], dtype=np.float64)  # v (1 - v),
        self._mem_step = np.array([], dtype=np.int64)  # and steps
        self._gain, self._gain_num, self._gain_den = 1.0, 0.0, 0.0  # cross-prompt gain g

    # -------------------------------------------------------------- priors and state

    def set_priors(self, prompt_ids: Any, priors: np.ndarray, n0: int = 8) -> None:
        """Replace all priors (and history). priors: (N,) in (0, 1); n0: reference rollouts each."""
        ids = np.asarray(prompt_ids).astype(str)
        p = np.asarray(priors, dtype=np.float64)
        if ids.ndim != 1 or p.shape != ids.shape:
            raise ValueError(
                f"prompt_ids {ids.shape} and priors {p.shape} must be 1-D of equal length"
            )
        if np.any(~np.isfinite(p)) or np.any((p <= 0) | (p >= 1)):
            raise ValueError("priors must lie strictly inside (0, 1); use estimate_priors()")
        if n0 < 0:
            raise ValueError(f"n0 must be >= 0, got {n0}")
        order = np.argsort(ids, kind="stable")
        ids, p = ids[order], p[order]
        if ids.size > 1 and np.any(ids[1:] == ids[:-1]):
            raise ValueError(
                f"duplicate prompt id in priors: {str(ids[1:][ids[1:] == ids[:-1]][0])!r}"
            )
        self._ids = ids
        self._mean, self._prec = self._belief(p, n0)
        self._last = np.zeros(ids.size, dtype=np.int64)

    def _belief(self, p: np.ndarray, n0: int) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian belief (logit mean, precision) on each prompt's reference value. (N,) each."""
        s = p * (n0 + 1.0) - 0.5  # successes behind the Jeffreys prior
        if self.options.prior_shrinkage == "empirical_bayes" and n0 > 1 and p.size > 2:
            a0, b0 = _beta_moments(s / n0, n0)
            p = (s + a0) / (n0 + a0 + b0)
            return logit(p), (n0 + a0 + b0) * p * (1.0 - p)
        return logit(p), (n0 + 1.0) * p * (1.0 - p)

    def state_dict(self) -> dict[str, Any]:
        return {
            "prompt_ids": self._ids.tolist(),
            "logit_mean": self._mean.tolist(),
            "precision": self._prec.tolist(),
            "last_step": self._last.tolist(),
            "step": self._step,
            "c_prev": self._c_prev,
            "cross": {
                "gain": [self._gain, self._gain_num, self._gain_den],
                "features": self._mem_f.tolist(),
                "prompt_ids": self._mem_id.tolist(),
                "residual": self._mem_g.tolist(),
                "information": self._mem_h.tolist(),
                "step": self._mem_step.tolist(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        keys = {"prompt_ids", "logit_mean", "precision", "last_step", "step", "c_prev"}
        # "cross" (the cross-prompt term's gain and memory) is optional: older checkpoints lack it
        if not keys <= set(state) <= keys | {"cross"}:
            raise ValueError(f"basis state must have keys {sorted(keys)} (+ 'cross'), got "
                             f"{sorted(state)}")
        ids = np.asarray(state["prompt_ids"], dtype=str)
        arrays = [np.asarray(state[k], dtype=np.float64) for k in ("logit_mean", "precision")]
        last = np.asarray(state["last_step"], dtype=np.int64)
        if any(a.shape != ids.shape for a in [*arrays, last]):
            raise ValueError("basis state arrays must all have the length of prompt_ids")
        self._ids, (self._mean, self._prec), self._last = ids, arrays, last
        self._step, self._c_prev = int(state["step"]), float(state["c_prev"])
        if "cross" in state:
            self._load_cross(state["cross"])

    def _load_cross(self, cross: dict[str, Any]) -> None:
        try:
            self._gain, self._gain_num, self._gain_den = map(float, cross["gain"])
            f = np.asarray(cross["features"], dtype=np.float64)
            self._mem_f = f if f.ndim == 2 else np.zeros((0, 0))
            self._mem_id = np.asarray(cross["prompt_ids"], dtype=str)
            self._mem_g = np.asarray(cross["residual"], dtype=np.float64)
            self._mem_h = np.asarray(cross["information"], dtype=np.float64)
            self._mem_step = np.asarray(cross["step"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"basis state 'cross' is malformed: {e}") from e
        n = self._mem_id.shape[0]
        if any(a.shape[0] != n for a in (self._mem_f, self._mem_g, self._mem_h, self._mem_step)):
            raise ValueError("basis state 'cross' arrays must all have the same length")

    @property
    def priors(self) -> dict[str, float]:
        """Current prior per prompt id (history-updated), in the reference frame."""
        return dict(zip(self._ids.tolist(), expit(self._mean).tolist(), strict=True))

    def _lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into self._ids (n,), known (n,) bool), vectorised by binary search."""
        if self._ids.size == 0:
            return np.zeros(ids.size, dtype=np.int64), np.zeros(ids.size, dtype=bool)
        idx = np.clip(np.searchsorted(self._ids, ids), 0, self._ids.size - 1)
        return idx, self._ids[idx] == ids

    # ------------------------------------------------------------------------ fit

    def _fit(self, z: np.ndarray, r: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, float]:
        """Leave-one-out c for every sample (n,) and the full-batch c.

        Samples outside `active` are not in the objective, so their LOO fit is the full fit.
        """
        o = self.options
        za, ra = z[active], r[active]
        m = za.size
        kappa = o.c_prior_strength

        def pen(g: np.ndarray) -> np.ndarray:
            return 0.5 * kappa * (g - self._c_prev) ** 2

        if m == 0:
            return np.full(z.size, self._c_prev), self._c_prev

        lo, hi = _loo_window(za, ra, kappa, self._c_prev, o.c_range)
        fine = _lattice(
            max(lo - 2 * _FINE_STEP, -o.c_range), min(hi + 2 * _FINE_STEP, o.c_range), _FINE_STEP
        )
        fi, obj = _loo_argmin(za, ra, fine, pen(fine), with_full=True)
        c_hat = _parabola(obj, fi, fine)
        c_full = float(c_hat[-1])
        c = np.full(z.size, c_full)
        # With a single active sample its LOO objective holds no data: keep the previous c.
        c[active] = c_hat[:-1] if m > 1 else self._c_prev
        return c, c_full

    # -------------------------------------------------------------------- compute

    def compute(self, batch: AdvantageBatch) -> AdvantageResult:
        o = self.options
        r, ids = batch.rewards, batch.prompt_ids
        ok = ~np.isnan(r)
        idx, known = self._lookup(ids)
        z = np.where(known, self._mean[idx] if self._mean.size else 0.0, 0.0)
        p = expit(z)
        active = ok & known & (p > o.eps) & (p < 1.0 - o.eps)
        r0 = np.where(ok, r, 0.0)
        c_loo, c_full = self._fit(z, r0, active)

        eta = z + c_loo
        if o.cross_prompt:
            if batch.features is None:
                raise ValueError(
                    "basis with cross_prompt=True needs AdvantageBatch.features (n, d); the "
                    "training loop computes them when the estimator asks (uses_features)"
                )
            delta = self._cross(batch.features, ids, z, r0, ok & known, c_loo)
            eta = eta + self._gain * delta
        b = expit(eta)
        if o.fallback == "loo_mean":
            b = np.where(known, b, _loo_batch_mean(r, ok))
        scale = 1.0
        if o.normalize == "batch_std" and ok.sum() > 1:
            scale = np.std((r - b)[ok]) + o.norm_eps
        adv = _finish(r, ok, b, scale)

        if o.cross_prompt:
            self._fit_gain(delta, z + c_loo, r0, ok & known)
            if o.cross_memory:
                self._remember(batch.features, ids, z, r0, ok & known, c_full)
        if o.history:
            self._update_history(ids, r0, ok, idx, known, z, c_full)
        self._c_prev = c_full
        self._step += 1
        info = {
            "basis/c": c_full,
            "basis/active_frac": float(active.sum() / max(ok.sum(), 1)),
            "basis/prior_coverage": float(known.mean()),
        }
        if o.cross_prompt:  # the gain the next step will use (0: features judged uninformative)
            info["basis/cross_gain"] = self._gain
        return AdvantageResult(b, adv, info)

    @property
    def uses_features(self) -> bool:
        return self.options.cross_prompt

    def _cross(self, feats, ids, z, r, src, c_loo) -> np.ndarray:
        """(n,) local logit offset delta_i from other samples' residuals (module doc).

        feats (n, d); z, r, c_loo (n,); src (n,) bool: samples whose residual is evidence.
        delta_i = sum_j w_ij (r_j - v_ij) / (lambda + sum_j w_ij v_ij (1 - v_ij)), j != i, with
        v_ij = sigmoid(z_j + c_hat_{-i}): one Newton step for an offset with prior N(0, 1/lambda).
        Nothing in it reads r_i (w_ii = 0, c_hat_{-i} is leave-one-out), so b_i stays exact LOO.
        """
        o = self.options
        centre = feats.mean(axis=0)  # (d,): features only, so no reward enters
        u = self._unit(feats, centre)
        w = np.exp((u @ u.T - 1.0) / o.cross_bandwidth) * src[None, :]  # (n, n)
        np.fill_diagonal(w, 0.0)
        v = expit(z[None, :] + c_loo[:, None])  # (n, n)
        num = (w * (r[None, :] - v)).sum(axis=1)
        den = o.cross_strength + (w * v * (1.0 - v)).sum(axis=1)
        if self._mem_f.shape[0]:
            wm = np.exp((u @ self._unit(self._mem_f, centre).T - 1.0) / o.cross_bandwidth)
            wm *= o.cross_decay ** (self._step - self._mem_step)[None, :]
            wm *= ids[:, None] != self._mem_id[None, :]  # a prompt's own past is in its history
            num += wm @ self._mem_g
            den += wm @ self._mem_h
        return num / den

    @staticmethod
    def _unit(f: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Rows minus `centre`, scaled to unit length (so u_i . u_j is a cosine similarity)."""
        c = f - centre
        return c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)

    def _fit_gain(self, delta, eta0, r, src) -> None:
        """Update the gain g of the cross-prompt term from this step's (now observed) rewards:
        weighted least squares of the residual r - sigmoid(eta0) on h * delta, with sums decayed
        by `cross_decay` per step and a weak pull towards 1. Used from the next step on."""
        v = expit(eta0[src])
        d = delta[src]
        rho = self.options.cross_decay
        self._gain_num = rho * self._gain_num + float(np.sum(d * (r[src] - v)))
        self._gain_den = rho * self._gain_den + float(np.sum(v * (1.0 - v) * d * d))
        g = (self._gain_num + _GAIN_PRIOR) / (self._gain_den + _GAIN_PRIOR)
        self._gain = float(np.clip(g, 0.0, _GAIN_MAX))

    def _remember(self, feats, ids, z, r, src, c) -> None:
        """Keep this step's residuals against the full-batch calibration for later steps."""
        v = expit(z[src] + c)
        keep = self._mem_step > self._step - self.options.cross_memory
        old = self._mem_f[keep] if self._mem_f.shape[0] else feats[:0]
        self._mem_f = np.vstack([old, feats[src]])
        self._mem_id = np.concatenate([self._mem_id[keep], ids[src]])
        self._mem_g = np.concatenate([self._mem_g[keep], r[src] - v])
        self._mem_h = np.concatenate([self._mem_h[keep], v * (1.0 - v)])
        self._mem_step = np.concatenate([self._mem_step[keep], np.full(int(src.sum()), self._step)])

    def _update_history(self, ids, r, ok, idx, known, z, c) -> None:
        """One discounted Laplace step per scored prompt, in the calibrated frame (see module doc)."""
        new = ok & ~known
        if new.any():
            self._add_prompts(np.unique(ids[new]), float(r[ok].mean()), c)
            idx, known = self._lookup(ids)
            z = np.where(known, self._mean[idx], z)
        sel = ok & known
        if not sel.any():
            return
        u, inv = np.unique(idx[sel], return_inverse=True)
        v = expit(z[sel] + c)
        grad = np.bincount(inv, weights=r[sel] - v, minlength=u.size)
        info = np.bincount(inv, weights=v * (1.0 - v), minlength=u.size)
        dt = self._step - self._last[u]
        prec = 1.0 / (1.0 / self._prec[u] + self.options.history_drift * dt) + info
        self._mean[u] += grad / prec
        self._prec[u] = prec
        self._last[u] = self._step

    def _add_prompts(self, new_ids: np.ndarray, batch_mean: float, c: float) -> None:
        m0 = logit(np.clip(batch_mean, 0.05, 0.95)) - c
        ids = np.concatenate([self._ids, new_ids])
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._mean = np.concatenate([self._mean, np.full(new_ids.size, m0)])[order]
        self._prec = np.concatenate([self._prec, np.full(new_ids.size, _NEW_PROMPT_PRECISION)])[
            order
        ]
        self._last = np.concatenate([self._last, np.full(new_ids.size, self._step)])[order]


class BasisPaperOptions(BasisOptions):
    history: bool = Field(
        False, description="off in the paper's form (the per-prompt history is our extension)"
    )
    c_prior_strength: float = Field(
        0.0, ge=0, description="0 in the paper's form (the pull to the previous c is ours)"
    )


@register_estimator("basis_paper")
class BasisPaper(Basis):
    """The paper's BASIS (DESIGN.md 3.1-3.3 only): priors + leave-one-out shared calibration.

    Same code as `basis` with our extensions off by default: no per-prompt history, no pull of c
    towards the previous step's c. Kept as its own name so figures can say which form they show.
    """

    Options = BasisPaperOptions
    options: BasisPaperOptions
