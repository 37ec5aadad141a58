"""The demo model: trainer/tiny.py's `DEMO_SHAPE`, warm-started by trainer/warmstart.py, cached.

It sits above both modules (tiny builds, warmstart trains, this composes them), so the imports
run one way: demo_model -> {tiny, warmstart} -> nothing of each other but warmstart -> tiny.
`ensure_demo_model` builds and warm-starts in a temporary sibling directory and renames it into
place, so a crash or a concurrent caller never sees half a model; a `demo.json` marker written
last says the directory is complete and records the recipe (model shape, warm-start settings),
so a model cached by an older recipe is rebuilt rather than silently reused.

The directory also carries the demo model's recommended training defaults (`TRAINING_DEFAULTS`,
trainer/model_defaults.py's sidecar): the generic `TrainConfig` defaults (lr 1e-6, 256 new tokens)
are sized for real models and teach this one nothing, so a job on it that leaves those fields out
gets the demo's values (trainer/cli.py DEMO_CONFIG) with a short run. The sidecar is not part of
the recipe (it changes no weight): it is rewritten in place when it differs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer import warmstart
from trainer.model_defaults import read_model_defaults, write_model_defaults
from trainer.tiny import DEMO_SHAPE, build_tiny_model

DEMO_MARKER = "demo.json"
DEMO_VERSION = 2

# trainer/cli.py DEMO_CONFIG's learning settings (tests/trainer/test_tiny.py keeps them equal),
# with a run short enough to try from the dashboard: 200 steps (about 30 s on an idle 2-core CPU)
# take held-out accuracy from 0.21 to about 0.29; `make run`'s 2,500 steps reach about 0.5.
TRAINING_DEFAULTS: dict[str, Any] = {
    "reward": "exact",  # the model answers with a bare number ("12+7=" -> "19")
    "reward_workers": 0,  # exact match is microseconds per item (each still has its timeout)
    "batch_size": 256,
    # eval_size stays unset (the whole held-out split: 400 rows of the demo's 4,000), so a smaller
    # dataset is not refused for it.
    "eval_every": 50,
    "sampling": {"max_new_tokens": 8},
    "loss": {"aggregation": "seq_mean"},
    "optimizer": {"lr": 5e-4, "micro_batch_size": 256, "warmup_steps": 5},
    "probe_every": 100,
    "probe_prompts": 16,
    "probe_rollouts": 32,
    "checkpoint_every": 100,
    "max_steps": 200,
}
TRAINING_DEFAULTS_NOTE = ("The demo model (0.1M parameters, arithmetic only): a high learning rate, "
                          "short completions and large batches, as in `python -m trainer demo`.")


def demo_recipe(seed: int = 0, warm_steps: int | None = None) -> dict[str, Any]:
    """Everything that decides the demo model's weights; stored in its marker, so a directory
    built by an older recipe (say, before the warm start was retuned) is recognised as stale."""
    return {"version": DEMO_VERSION, "seed": seed, "model": dict(DEMO_SHAPE),
            "warm_start": warmstart.recipe(steps=warm_steps)}


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((path / DEMO_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and (path / "config.json").is_file() else None


def is_demo_model(path: str | os.PathLike, recipe: dict[str, Any] | None = None) -> bool:
    """True if `path` holds a complete demo model (its marker is written last), built by
    `recipe` when one is given."""
    marker = _read_marker(Path(path))
    return marker is not None and (recipe is None or marker.get("recipe") == recipe)


def ensure_demo_model(path: str | os.PathLike, *, seed: int = 0, warm_steps: int | None = None,
                      threads: int | None = None,
                      progress: Callable[[int, int, str], None] | None = None) -> Path:
    """The warm-started demo model at `path`, built (under a CPU minute) if not there yet.

    Idempotent: a directory whose `demo.json` marker matches the current `demo_recipe` is
    returned as is. Otherwise the model is built and warm-started (trainer/warmstart.py,
    `warm_steps` overriding its default) in a temporary sibling directory that is renamed into
    place; a stale demo model (older recipe) is replaced the same way (old moved aside, new renamed
    in: a reader may find no directory for that instant). Raises FileExistsError if
    `path` exists, is not empty and is not a demo model. `progress(step, steps, detail)` follows
    the warm start (trainer/warmstart.py; it stops early, so `steps` is an upper bound).
    """
    path = Path(path)
    recipe = demo_recipe(seed, warm_steps)
    if is_demo_model(path, recipe):
        _ensure_defaults(path)
        return path
    stale = is_demo_model(path)
    if path.exists() and any(path.iterdir()) and not stale:
        raise FileExistsError(f"{path} exists and is not a demo model; pick an empty directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.building-"))
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        build_tiny_model(tmp, seed=seed, **DEMO_SHAPE)
        report = warmstart.warm_start(tmp, seed=seed, steps=warm_steps, threads=threads,
                                      progress=progress)
        write_model_defaults(tmp, TRAINING_DEFAULTS, TRAINING_DEFAULTS_NOTE)
        marker = {"recipe": recipe, "report": report.to_dict()}
        (tmp / DEMO_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            if stale:
                os.replace(path, old)
            elif path.exists():
                path.rmdir()  # empty, checked above; a rename cannot replace a non-empty dir
            os.replace(tmp, path)
        except OSError:
            if not is_demo_model(path, recipe):  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def _ensure_defaults(path: Path) -> None:
    """(Re)write the sidecar of a complete demo model built before it existed or changed."""
    try:
        current = read_model_defaults(path)
    except ValueError:
        current = None
    if current != TRAINING_DEFAULTS:
        write_model_defaults(path, TRAINING_DEFAULTS, TRAINING_DEFAULTS_NOTE)
