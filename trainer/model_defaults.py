"""A model's recommended training defaults: a small JSON sidecar in its directory.

The generic `TrainConfig` defaults (lr 1e-6, 100 steps, 256 new tokens) are right for real
instruction-tuned models and teach a tiny model nothing; a model that knows better carries
`basis_defaults.json` next to its `config.json`:

    {"description": "why these values", "config": {"optimizer": {"lr": 5e-4}, "max_steps": 200}}

`config` holds `TrainConfig` fields a user may set (never the server's paths). They are applied
under a job's config: a field the job sets wins, nested blocks (optimizer, sampling, loss, ...)
are merged field by field, so `{"optimizer": {"grad_clip": 0.5}}` still gets the model's lr. The
demo model's builder (trainer/demo_model.py) writes one; any model directory may hold one.

Pure: stdlib only, no validation against `TrainConfig` here (the caller validates the merged
config, so a bad default fails with the field's name like any other config error).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS_FILE = "basis_defaults.json"
MAX_BYTES = 64 * 1024  # a sidecar is a handful of fields; anything larger is not one
# Server paths and run identity: a model cannot choose where a job reads or writes.
FORBIDDEN = frozenset({"model", "dataset", "eval_dataset", "run_dir", "output_dir",
                       "priors_cache_dir"})


class ModelDefaultsError(ValueError):
    """The sidecar exists but cannot be used; the message says what is wrong with it."""


def read_model_defaults(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The `config` of `<model_dir>/basis_defaults.json`; {} when the model has none.

    Raises ModelDefaultsError for a file that is not a JSON object with a `config` object, is
    too large, or names a server field."""
    path = Path(model_dir) / DEFAULTS_FILE
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ModelDefaultsError(f"{DEFAULTS_FILE} is larger than {MAX_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ModelDefaultsError):
            raise
        raise ModelDefaultsError(f"{DEFAULTS_FILE} is not readable JSON ({exc})") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict):
        raise ModelDefaultsError(f'{DEFAULTS_FILE} must be an object with a "config" object')
    if bad := sorted(FORBIDDEN & set(config)):
        raise ModelDefaultsError(f"{DEFAULTS_FILE} may not set {', '.join(bad)} (chosen by the server)")
    return config


def write_model_defaults(model_dir: str | os.PathLike, config: Mapping[str, Any],
                         description: str) -> Path:
    """Write the sidecar atomically (temporary file, then rename); returns its path."""
    if bad := sorted(FORBIDDEN & set(config)):
        raise ModelDefaultsError(f"model defaults may not set {', '.join(bad)}")
    path = Path(model_dir) / DEFAULTS_FILE
    tmp = path.with_name(f".{DEFAULTS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"description": description, "config": dict(config)}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def apply_model_defaults(defaults: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with the model's `defaults` filling what it leaves out, nested blocks merged
    field by field; a field present in `config` (even as null) is the user's choice and wins."""
    merged = dict(config)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, Mapping) and isinstance(merged[key], Mapping):
            merged[key] = apply_model_defaults(value, merged[key])
    return merged
