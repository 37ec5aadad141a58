"""The demo model: trainer/tiny.py's `DEMO_SHAPE`, warm-started by trainer/warmstart.py, cached.

It sits above both modules (tiny builds, warmstart trains, this composes them), so the imports
run one way: demo_model -> {tiny, warmstart} -> nothing of each other but warmstart -> tiny.
`ensure_demo_model` builds and warm-starts in a temporary sibling directory and renames it into
place, so a crash or a concurrent caller never sees half a model; a `demo.json` marker written
last says the directory is complete and records the recipe (model shape, warm-start settings),
so a model cached by an older recipe is rebuilt rather than silently reused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from trainer import warmstart
from trainer.tiny import DEMO_SHAPE, build_tiny_model

DEMO_MARKER = "demo.json"
DEMO_VERSION = 2


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
                      threads: int | None = None) -> Path:
    """The warm-started demo model at `path`, built (under a CPU minute) if not there yet.

    Idempotent: a directory whose `demo.json` marker matches the current `demo_recipe` is
    returned as is. Otherwise the model is built and warm-started (trainer/warmstart.py,
    `warm_steps` overriding its default) in a temporary sibling directory that is renamed into
    place; a stale demo model (older recipe) is replaced the same way (old moved aside, new renamed
    in: a reader may find no directory for that instant). Raises FileExistsError if
    `path` exists, is not empty and is not a demo model.
    """
    path = Path(path)
    recipe = demo_recipe(seed, warm_steps)
    if is_demo_model(path, recipe):
        return path
    stale = is_demo_model(path)
    if path.exists() and any(path.iterdir()) and not stale:
        raise FileExistsError(f"{path} exists and is not a demo model; pick an empty directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.building-"))
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        build_tiny_model(tmp, seed=seed, **DEMO_SHAPE)
        report = warmstart.warm_start(tmp, seed=seed, steps=warm_steps, threads=threads)
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
