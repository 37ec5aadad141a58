"""Models available to jobs: HF directories (holding config.json) under the configured model roots.

A model is named by its path relative to its root (`tiny` or `Qwen/Qwen2.5-0.5B`, at most two levels
deep, like the Hugging Face hub). Names are only ever looked up in this listing, never joined to a
path, so `../etc` or `/abs/path` cannot reach a directory outside the roots. Earlier roots win when
two roots hold the same name.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.services.errors import Invalid, NotFound
from core.settings import Settings

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?")


def _is_model(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def list_models(settings: Settings) -> dict[str, Path]:
    """Model name -> directory, sorted by name."""
    found: dict[str, Path] = {}
    for root in settings.model_roots:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if _is_model(child):
                found.setdefault(child.name, child)
            elif child.is_dir():
                for grandchild in sorted(child.iterdir()):
                    if not grandchild.name.startswith(".") and _is_model(grandchild):
                        found.setdefault(f"{child.name}/{grandchild.name}", grandchild)
    return dict(sorted(found.items()))


def resolve_model(settings: Settings, name: str) -> Path:
    """Directory of model `name`; 422 for a name that is not a model name, 404 for an unknown one."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name.split("/"):
        raise Invalid("model must be a name from GET /v1/models, not a path", "model")
    path = list_models(settings).get(name)
    if path is None:
        raise NotFound(f"no model {name!r}; GET /v1/models lists the available ones", "model")
    return path
