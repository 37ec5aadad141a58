"""The New job form's pure parts: form values -> job config, and API error -> form field.

Choices:
- The form shows the handful of `TrainConfig` fields people change most; anything else goes in an
  "advanced" JSON object that is deep-merged over them, so the form never blocks a valid config.
- The API is the only validator (it runs the real `TrainConfig`); the dashboard just puts its error
  next to the field it names. `param` is `config.<dotted field>` for a field error; a cross-field
  error has `param == "config"` and names the field at the start of a clause in its message, so
  that is searched too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

# The form's choices come from the API (`GET /v1/components`, the trainer's registries); these
# are only the fallback for an API that cannot list them. The API rejects an unknown name anyway.
ESTIMATORS = ["basis", "reinforce_pp", "grpo", "dr_grpo", "rloo"]
REWARDS = ["math", "exact", "numeric", "regex", "choice"]
ENGINES = ["hf", "vllm"]
FALLBACK_COMPONENTS: dict[str, Any] = {
    "estimators": [{"name": n, "description": "", "options": None,
                    "min_rollouts": 1 if n in ("basis", "reinforce_pp") else 2} for n in ESTIMATORS],
    "rewards": [{"name": n, "description": "", "options": None} for n in REWARDS],
    "engines": [{"name": n, "description": "", "options": None} for n in ENGINES],
    "defaults": {},  # no copy of the server's defaults: empty widgets, and the server fills them
}

# Dotted config paths the form edits (the API's `param` names them the same way).
FORM_FIELDS = [
    "estimator", "rollouts_per_prompt", "batch_size", "max_steps", "reward", "engine", "n0",
    "seed", "eval_every", "checkpoint_every", "probe_every", "optimizer.lr", "loss.kl_coef",
    "sampling.temperature", "sampling.max_new_tokens", "lora", "lora.r",
]
ADVANCED = "advanced"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated by `override`, merging nested mappings instead of replacing them."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a nested config, in order."""
    leaves: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            leaves.extend(flatten(value, f"{prefix}{key}."))
        else:
            leaves.append((prefix + key, value))
    return leaves


def get_path(config: Mapping[str, Any], path: str) -> Any:
    """config[a][b] for path "a.b"; None where any part is missing (or null)."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def choice_index(options: list[str], default: Any) -> int | None:
    """The position of the server's default among a selectbox's options (None: leave it empty)."""
    return options.index(default) if default in options else None


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """config[a][b] = value for path "a.b", creating the intermediate mappings."""
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def build_config(values: Mapping[str, Any], advanced: str = "") -> dict[str, Any]:
    """The `config` of `POST /v1/jobs` from dotted form values plus an advanced JSON object.

    `lora` (bool) turns into a LoRA block holding `lora.r`; values that are None are left out so
    the server default applies. Raises ValueError (message starts with "advanced:") for bad JSON.
    """
    config: dict[str, Any] = {}
    use_lora = bool(values.get("lora"))
    for path, value in values.items():
        if value is None or path == "lora" or (path.startswith("lora.") and not use_lora):
            continue
        set_path(config, path, value)
    if use_lora:
        config.setdefault("lora", {})
    if advanced.strip():
        try:
            extra = json.loads(advanced)
        except json.JSONDecodeError as exc:
            raise ValueError(f"advanced: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(extra, dict):
            raise ValueError("advanced: must be a JSON object of config fields")
        config = deep_merge(config, extra)
    return config


def error_field(param: str | None, message: str, fields: Iterable[str] = FORM_FIELDS) -> str | None:
    """The form field an API error belongs to (a dotted config path, `dataset`, `model`), or None."""
    fields = list(fields)
    if param in ("dataset_id", "file", "name"):
        return "dataset"
    if param == "model":
        return "model"
    if param and param.startswith("config."):
        path = param.removeprefix("config.")
        # The deepest form field that is the error's path or a parent of it ("optimizer.lr.x").
        for field in sorted(fields, key=len, reverse=True):
            if path == field or path.startswith(field + "."):
                return field
        return ADVANCED
    if param == "config":
        found = [(m.start(), m.group(1)) for m in
                 re.finditer(r"(?:^|[\s,:;])([a-z_][a-z0-9_.]*):", message)]
        for _, name in sorted(found):
            if name in fields:
                return name
        return ADVANCED
    return None


def option_rows(schema: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per option of a component's JSON Schema: name, default, description."""
    props = (schema or {}).get("properties", {})
    return [{"option": name, "default": json.dumps(spec.get("default")),
             "description": spec.get("description", "")} for name, spec in props.items()]
