"""The on-disk cache of BASIS offline priors: where a run's priors live and when they can be reused.

The estimate itself (n0 rollouts of every training prompt) is the loop's; this module keys, reads
and writes it (file format: trainer/priors.py). Choices:
- The key hashes the model directory's files, the tokenised training prompts with their answers,
  n0 and the sampling parameters: anything that changes the reference rollouts changes the key.
- A file is reused only when its prompt ids are exactly the run's (same order), else re-estimated.
- The cost recorded when the priors were first estimated (`seconds`, `rollouts`) comes back with a
  cached read, so a training estimator's budget counts it either way (trainer/loop.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.config import TrainConfig
from trainer.model_defaults import DEFAULTS_FILE
from trainer.modeling import Prompts
from trainer.priors import load_priors, priors_cache_key, save_priors
from trainer.sinks import MetricsSink


@dataclass(frozen=True)
class OfflinePriors:
    """A run's priors and what estimating them cost (as first measured, when read from the cache)."""

    priors: np.ndarray  # (N,) in (0, 1), one per training prompt, in the prompts' order
    seconds: float
    rollouts: int
    cached: bool


def cached_priors(cfg: TrainConfig, prompts: Prompts, sink: MetricsSink,
                  estimate: Callable[[], tuple[np.ndarray, int]]) -> OfflinePriors:
    """The priors of `prompts`, from the cache or from `estimate()` -> (priors (N,), rollouts)."""
    fingerprint = model_fingerprint(cfg.model)
    if cfg.base_model is not None:  # an adapter model: the same adapter on another base differs
        fingerprint += model_fingerprint(cfg.base_model)
    key = priors_cache_key(fingerprint, rows_hash(prompts), cfg.n0, cfg.sampling_dict)
    path = priors_dir(cfg) / f"{key}.json"
    if path.is_file():
        ids, priors, meta = load_priors(path)
        if ids == prompts.ids:
            # The key, not the path: events reach users, and a server path is not theirs to see.
            sink.log_event("priors", f"reused cached priors {key[:12]}", {"cache_key": key})
            return OfflinePriors(priors, float(meta["seconds"]), int(meta["rollouts"]), cached=True)
    t = time.perf_counter()
    priors, rollouts = estimate()
    seconds = time.perf_counter() - t
    meta = {"seconds": seconds, "rollouts": rollouts, "n0": cfg.n0,
            "model": cfg.model, "dataset": cfg.dataset, "sampling": cfg.sampling_dict}
    save_priors(path, prompts.ids, priors, meta)
    sink.log_event("priors", f"estimated priors from {rollouts} rollouts", {"cache_key": key})
    return OfflinePriors(priors, seconds, rollouts, cached=False)


def priors_dir(cfg: TrainConfig) -> Path:
    return Path(cfg.priors_cache_dir or Path.home() / ".cache" / "basis" / "priors").expanduser()


def model_fingerprint(model_dir: str) -> str:
    """Hash of the model directory's files: names, sizes, and content (head and tail of big ones).

    Hashing every byte of a 15 GB model would cost minutes per job; weights that differ in their
    first or last MiB, or in size, are caught, which is enough to key a cache.
    """
    h = hashlib.sha256()
    root = Path(model_dir)
    # The recommended training defaults (trainer/model_defaults.py) change no weight: adding or
    # editing them must not invalidate cached priors.
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p != root / DEFAULTS_FILE):
        size = f.stat().st_size
        h.update(f"{f.relative_to(root)}\0{size}\0".encode())
        with f.open("rb") as fh:
            if size <= 1 << 22:
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return h.hexdigest()


def rows_hash(prompts: Prompts) -> str:
    blob = json.dumps([prompts.ids, prompts.tokens, prompts.answers])
    return hashlib.sha256(blob.encode()).hexdigest()
