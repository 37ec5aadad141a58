"""Value-MSE scenarios: the built-in synthetic suite and the `.npz` scenario file format.

A scenario is the true value V_t(x) of every prompt at every training step, plus how the bench
samples from it (DESIGN.md section 3): `true_value` (T, N) in [0, 1], `ref_value` (N,) (the
reference policy, default `true_value[0]`), scalars `batch_size`, `n0`, `seed`. One optional
extension: `reward_levels` (scalar int, default 1): a reward is Binomial(levels, V) / levels, so
levels = 1 is a Bernoulli pass/fail and levels > 1 is partial credit whose expected value is V.

How the built-ins move the policy (the drift model is chosen to be realistic for RL, not to be
BASIS's own model):
    logit V_t(x) = logit p_ref(x) + c_t * (1 + a_x) + w_x(t)
- c_t: global improvement, c_final * (1 - exp(-t / tau)) / (1 - exp(-T / tau)), a saturating
  learning curve; slow drift has tau ~ T, fast drift tau ~ T / 5.
- a_x ~ N(0, slope_sd^2): prompt-specific learnability (some prompts improve faster than the
  shared calibration predicts); w_x(t): a per-prompt Gaussian random walk (step sd walk_sd),
  prompt-specific drift that no shared scalar can explain. Every built-in has some of both; the
  `prompt_drift` scenario has a lot.
- p_ref(x) ~ Beta(a, b): difficulty mixes from a hard math set (mass near 0) to an easy one, a
  U-shape (many never/always solved prompts, typical of base models on mixed sets) and a narrow
  band around 0.5 (where a batch mean is already a good baseline).
Dataset size, batch size and steps set how often a prompt comes back (epochs = T * B / N), which
decides what per-prompt history can add; `one_epoch` has none to add.

The `featured` suite (`FEATURED`, `make_featured`) moves the policy in ways that are *not* a
logit shift of the reference, and gives every prompt a feature vector (`features` (N, d), what a
policy's hidden state would be), so estimators that share information across similar prompts can
be tested without a model. Prompts belong to one of K latent skills; features are the skill's
centroid plus prompt noise (noise_sd sets how well features identify the skill):
- `skills`: the policy acquires skill k over a logistic window at a skill-specific time; a prompt
  of an acquired skill is solved with probability p_ref + (1 - p_ref) * s_k(t) (a mixture, which
  lifts hard prompts more in logit than easy ones, unlike a shift).
- `interference`: as `skills`, but a third of the skills are forgotten instead:
  V = p_ref (1 - 0.8 s_k(t)), so the batch's shared calibration moves one way and those prompts
  the other.
- `sharpen`: logit V = (1 + 1.5 t / T) logit p_ref: the policy grows confident, easy prompts go
  to 1 and hard ones to 0 (a scaling, not a shift); features carry skill noise only, so the
  cross-prompt term must not hurt where features say nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit


@dataclass
class Scenario:
    """true_value: (T, N); ref_value: (N,); batch_size <= N; reward_levels >= 1."""

    name: str
    true_value: np.ndarray
    ref_value: np.ndarray
    batch_size: int
    n0: int
    seed: int
    reward_levels: int = 1
    description: str = ""
    features: np.ndarray | None = None  # (N, d) per-prompt features, optional

    def __post_init__(self) -> None:
        v = np.asarray(self.true_value, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
            raise ValueError(f"true_value must be (T, N) with T, N >= 1, got shape {v.shape}")
        ref = v[0] if self.ref_value is None else np.asarray(self.ref_value, dtype=np.float64)
        if ref.shape != (v.shape[1],):
            raise ValueError(f"ref_value must have shape ({v.shape[1]},), got {ref.shape}")
        for field, a in (("true_value", v), ("ref_value", ref)):
            if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
                raise ValueError(f"{field} must be finite and in [0, 1]")
        if not 1 <= int(self.batch_size) <= v.shape[1]:
            raise ValueError(f"batch_size must be in [1, N={v.shape[1]}], got {self.batch_size}")
        if int(self.n0) < 0:
            raise ValueError(f"n0 must be >= 0, got {self.n0}")
        if int(self.reward_levels) < 1:
            raise ValueError(f"reward_levels must be >= 1, got {self.reward_levels}")
        if self.features is not None:
            f = np.asarray(self.features, dtype=np.float64)
            if f.ndim != 2 or f.shape[0] != v.shape[1] or not np.all(np.isfinite(f)):
                raise ValueError(f"features must be finite (N={v.shape[1]}, d), got {f.shape}")
            self.features = f
        self.true_value, self.ref_value = v, ref
        self.batch_size, self.n0 = int(self.batch_size), int(self.n0)
        self.seed, self.reward_levels = int(self.seed), int(self.reward_levels)

    @property
    def epochs(self) -> float:
        return self.true_value.shape[0] * self.batch_size / self.true_value.shape[1]


def save_scenario(path: str | Path, sc: Scenario) -> None:
    """Write a scenario as `.npz` (the DESIGN.md format plus `reward_levels`, `name`)."""
    np.savez_compressed(
        path,
        true_value=sc.true_value,
        ref_value=sc.ref_value,
        batch_size=np.int64(sc.batch_size),
        n0=np.int64(sc.n0),
        seed=np.int64(sc.seed),
        reward_levels=np.int64(sc.reward_levels),
        name=np.str_(sc.name),
        description=np.str_(sc.description),
        **({} if sc.features is None else {"features": sc.features}),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario `.npz`; missing required keys are named in the error."""
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("true_value", "batch_size", "n0", "seed") if k not in f.files]
        if missing:
            raise ValueError(f"{path}: scenario file lacks {', '.join(missing)}")
        get = {k: f[k] for k in f.files}
    return Scenario(
        name=str(get.get("name", Path(path).stem)),
        true_value=get["true_value"],
        ref_value=get.get("ref_value"),
        batch_size=int(get["batch_size"]),
        n0=int(get["n0"]),
        seed=int(get["seed"]),
        reward_levels=int(get.get("reward_levels", 1)),
        description=str(get.get("description", "")),
        features=get.get("features"),
    )


@dataclass(frozen=True)
class Spec:
    """Parameters of one built-in scenario (see the module docstring for the model)."""

    description: str
    beta: tuple[float, float]
    c_final: float
    tau_frac: float
    slope_sd: float = 0.3
    walk_sd: float = 0.03
    n_prompts: int = 4096
    batch_size: int = 256
    steps: int = 128
    reward_levels: int = 1
    n0: int = 8


BUILTIN: dict[str, Spec] = {
    "uniform_slow": Spec("uniform difficulty, slow improvement", (1.0, 1.0), 1.0, 1.0),
    "hard_fast": Spec("hard set (mean 0.2), fast improvement", (0.5, 2.0), 3.0, 0.2),
    "easy_slow": Spec("easy set (mean 0.8), slow improvement", (2.0, 0.5), 1.0, 1.0),
    "ushape_fast": Spec("U-shaped: many never/always solved, fast", (0.3, 0.3), 2.5, 0.25),
    "narrow_mid": Spec("narrow band around 0.5, little drift", (5.0, 5.0), 0.5, 1.0),
    "prompt_drift": Spec(
        "uniform, strong prompt-specific drift", (1.0, 1.0), 1.5, 0.5, slope_sd=1.0, walk_sd=0.1
    ),
    "partial_credit": Spec(
        "partial credit (4 sub-checks), uniform", (1.0, 1.0), 1.5, 0.5, reward_levels=4
    ),
    "one_epoch": Spec("large set seen once (32768 prompts)", (0.7, 0.7), 1.5, 0.5, n_prompts=32768),
    "small_batch": Spec(
        "batch of 16 prompts, 512-prompt set",
        (1.0, 1.0),
        1.5,
        0.5,
        n_prompts=512,
        batch_size=16,
        steps=256,
    ),
}


def make_scenario(name: str, seed: int = 0) -> Scenario:
    """Generate built-in scenario `name` deterministically from `seed`."""
    if name not in BUILTIN:
        raise ValueError(f"unknown scenario {name!r}; built-ins: {', '.join(BUILTIN)}")
    s = BUILTIN[name]
    # Independent stream per scenario name, so adding a scenario never changes the others.
    rng = np.random.default_rng([seed, *name.encode()])
    n, t_steps = s.n_prompts, s.steps
    p_ref = np.clip(rng.beta(*s.beta, size=n), 1e-6, 1 - 1e-6)
    tau = s.tau_frac * t_steps
    t = np.arange(t_steps)
    c = s.c_final * (1 - np.exp(-t / tau)) / (1 - np.exp(-(t_steps - 1) / tau))  # (T,)
    slope = rng.normal(0.0, s.slope_sd, size=n)  # (N,)
    walk = np.cumsum(rng.normal(0.0, s.walk_sd, size=(t_steps, n)), axis=0)
    walk -= walk[0]  # the policy starts at the reference
    theta = logit(p_ref)[None, :] + c[:, None] * (1.0 + slope)[None, :] + walk
    return Scenario(
        name=name,
        true_value=expit(theta),
        ref_value=p_ref,
        batch_size=s.batch_size,
        n0=s.n0,
        seed=int(rng.integers(2**31)),
        reward_levels=s.reward_levels,
        description=s.description,
    )


@dataclass(frozen=True)
class FeaturedSpec:
    """Parameters of one featured scenario (module docstring): K skills, d-dim features."""

    description: str
    drift: str  # "skills" | "interference" | "sharpen"
    beta: tuple[float, float] = (1.0, 1.0)
    skills: int = 16
    dim: int = 16
    noise_sd: float = 0.5
    n_prompts: int = 4096
    batch_size: int = 256
    steps: int = 128
    n0: int = 8


FEATURED: dict[str, FeaturedSpec] = {
    "skills": FeaturedSpec("16 skills acquired at different times (mixture drift)", "skills"),
    "interference": FeaturedSpec("skills acquired, a third forgotten", "interference"),
    "sharpen": FeaturedSpec("policy sharpens: logit scaled, features uninformative", "sharpen"),
}


def make_featured(name: str, seed: int = 0) -> Scenario:
    """Generate featured scenario `name` deterministically from `seed`."""
    if name not in FEATURED:
        raise ValueError(f"unknown featured scenario {name!r}; choose from: {', '.join(FEATURED)}")
    s = FEATURED[name]
    rng = np.random.default_rng([seed, *b"featured", *name.encode()])
    n, t_steps = s.n_prompts, s.steps
    p_ref = np.clip(rng.beta(*s.beta, size=n), 1e-6, 1 - 1e-6)
    skill = rng.integers(0, s.skills, size=n)  # (N,)
    centroid = rng.normal(0.0, 1.0, size=(s.skills, s.dim))
    features = centroid[skill] + rng.normal(0.0, s.noise_sd, size=(n, s.dim))
    t = np.arange(t_steps)[:, None]  # (T, 1)
    if s.drift == "sharpen":
        theta = (1.0 + 1.5 * t / t_steps) * logit(p_ref)[None, :]
        value = expit(theta)
    else:
        onset = rng.uniform(0.1, 0.9, size=s.skills) * t_steps  # (K,)
        width = rng.uniform(0.03, 0.15, size=s.skills) * t_steps
        level = rng.uniform(0.3, 0.9, size=s.skills)  # how much of the skill is acquired
        acq = level * (expit((t - onset) / width) - expit(-onset / width))  # (T, K), 0 at t=0
        a = acq[:, skill]  # (T, N)
        value = p_ref + (1.0 - p_ref) * a
        if s.drift == "interference":
            forgotten = (np.arange(s.skills) % 3 == 0)[skill]
            value = np.where(forgotten[None, :], p_ref * (1.0 - 0.8 * a), value)
    return Scenario(
        name=name,
        true_value=np.clip(value, 0.0, 1.0),
        ref_value=p_ref,
        batch_size=s.batch_size,
        n0=s.n0,
        seed=int(rng.integers(2**31)),
        description=s.description,
        features=features,
    )
