"""BASIS offline priors: estimation from reference rollouts and the on-disk cache format.

Choices:
- Prior p(x) = (s + 1/2) / (n0 + 1) (DESIGN.md 3.1), where s is the *sum* of the n0 reference
  rewards, so partial credit counts fractionally. This is the posterior mean under a Jeffreys
  Beta(1/2, 1/2) prior: never exactly 0 or 1, so logit p is always finite.
- Unscorable reference rewards (NaN) are dropped per prompt: that prompt's n0 is the number of
  scorable rollouts it actually got (`priors_from_rewards`).
- Cache format: one JSON file (human-readable, diffable, exact float round trip):
  `{"format": "basis-priors", "version": 1, "meta": {...}, "prompt_ids": [...], "priors": [...]}`.
  `meta` holds whatever identifies the estimate (model, dataset, n0, sampling params, cost); its key
  `priors_cache_key(...)` hashes those so later jobs can find and reuse a file. Written to a temp
  file and renamed, so a crash never leaves half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

PRIORS_FORMAT = "basis-priors"
PRIORS_VERSION = 1


@runtime_checkable
class TakesPriors(Protocol):
    """An estimator that uses offline priors: the loop (and the probe) run the offline phase for it."""

    def set_priors(self, prompt_ids: Any, priors: np.ndarray, n0: int = ...) -> None: ...


def estimate_priors(successes: np.ndarray, n0: int | np.ndarray) -> np.ndarray:
    """Jeffreys-smoothed prior success probability per prompt.

    successes: (N,) float, sum of the n0 reference rewards of each prompt (in [0, n0]).
    n0: int or (N,) int, number of scorable reference rollouts per prompt (>= 0).
    Returns (N,) float64 in (0, 1): (successes + 1/2) / (n0 + 1).
    """
    s = np.asarray(successes, dtype=np.float64)
    n = np.broadcast_to(np.asarray(n0, dtype=np.float64), s.shape)
    if s.ndim != 1:
        raise ValueError(f"successes must be 1-D (one sum per prompt), got shape {s.shape}")
    if np.any(~np.isfinite(s)) or np.any(~np.isfinite(n)):
        raise ValueError("successes and n0 must be finite")
    if np.any(n < 0):
        raise ValueError(f"n0 must be >= 0, got min {n.min()}")
    if np.any(s < 0) or np.any(s > n):
        raise ValueError("successes must lie in [0, n0] (sum of rewards in [0, 1])")
    return (s + 0.5) / (n + 1.0)


def priors_from_rewards(rewards: np.ndarray) -> np.ndarray:
    """Priors from the raw reference rewards.

    rewards: (N, n0) float in [0, 1], NaN = unscorable (dropped from that prompt's count).
    Returns (N,) float64 priors.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be (N, n0), got shape {r.shape}")
    ok = ~np.isnan(r)
    if np.any((r[ok] < 0) | (r[ok] > 1)):
        raise ValueError("reference rewards must lie in [0, 1] (NaN = unscorable)")
    return estimate_priors(np.where(ok, r, 0.0).sum(axis=1), ok.sum(axis=1))


def priors_cache_key(model: str, dataset: str, n0: int, sampling: Mapping[str, Any]) -> str:
    """Stable hex key for a (model, dataset, n0, sampling params) combination."""
    blob = json.dumps(
        {"model": model, "dataset": dataset, "n0": int(n0), "sampling": dict(sampling)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _validate(prompt_ids: list[str], priors: np.ndarray) -> None:
    if priors.ndim != 1 or len(prompt_ids) != priors.shape[0]:
        raise ValueError(
            f"prompt_ids ({len(prompt_ids)}) and priors ({priors.shape}) must be 1-D of equal length"
        )
    if len(set(prompt_ids)) != len(prompt_ids):
        raise ValueError("prompt_ids must be unique")
    if np.any(~np.isfinite(priors)) or np.any((priors <= 0) | (priors >= 1)):
        raise ValueError("priors must lie strictly inside (0, 1)")


def save_priors(
    path: str | Path,
    prompt_ids: list[str] | np.ndarray,
    priors: np.ndarray,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write priors atomically as JSON. Returns the path written."""
    ids = [str(i) for i in np.asarray(prompt_ids).tolist()]
    p = np.asarray(priors, dtype=np.float64)
    _validate(ids, p)
    doc = {
        "format": PRIORS_FORMAT,
        "version": PRIORS_VERSION,
        "meta": dict(meta or {}),
        "prompt_ids": ids,
        "priors": p.tolist(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_priors(path: str | Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Read a priors file written by `save_priors`: (prompt_ids, priors (N,), meta)."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a priors file (invalid JSON: {e})") from e
    if not isinstance(doc, dict) or doc.get("format") != PRIORS_FORMAT:
        raise ValueError(f"{path}: not a priors file (format must be {PRIORS_FORMAT!r})")
    if doc.get("version") != PRIORS_VERSION:
        raise ValueError(f"{path}: unsupported priors version {doc.get('version')!r}")
    ids = [str(i) for i in doc["prompt_ids"]]
    p = np.asarray(doc["priors"], dtype=np.float64)
    _validate(ids, p)
    return ids, p, dict(doc.get("meta") or {})
