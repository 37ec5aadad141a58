"""A job's `TrainConfig`: what the user may set, what the server fills, and the one resolution of a
stored job into the config the trainer runs.

Choices:
- `resolve_train_config` is the only place the server fields are filled (`model` and, for an
  adapter model, `base_model` from the catalogue as the job's owner sees it, `dataset` from storage, `run_dir` = `Settings.job_run_dir`, `priors_cache_dir` =
  `<storage dir>/priors/<owner id>`, shared by one owner's jobs on the same model and data, never
  across owners: a cache hit would tell a user that someone else trained on the same rows). The
  API calls it when a job is created, so a bad field fails at POST time with its name, and the
  worker when the job starts, on its own machine's paths: both see the same config.
- A job row stores the validated config with its defaults minus the server fields
  (`stored_config`); a row written before `priors_cache_dir` was a server field holds it as null,
  which the resolution overrides like any server field, so old rows stay runnable.
- A model may recommend defaults (trainer/model_defaults.py, `basis_defaults.json` in its
  directory: the demo model's lr and steps, say); they fill what the user's config leaves out,
  before validation, so the job row records them like any other value (and the worker, resolving
  the stored, complete config, changes nothing). An error in a field the model's defaults filled
  says so, since the user never typed it.
- The user's config may not name a server field; `eval_dataset` and `priors_cache_dir` (server
  paths: reading or writing arbitrary files, issue 8) are refused unless null, which is what older
  rows returned, so configs round-trip. NaN/Infinity are refused too.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.orm import Session

from core.jobs.limits import big_integer
from core.models import Dataset
from core.services.catalog import resolve_model
from core.services.datasets import dataset_path
from core.services.errors import Invalid
from core.settings import Settings
from trainer.config import TrainConfig, format_validation_error
from trainer.model_defaults import ModelDefaultsError, apply_model_defaults, read_model_defaults

# Filled by `resolve_train_config`, never stored with the job.
SERVER_FIELDS = ("model", "base_model", "dataset", "run_dir", "priors_cache_dir")
# Refused in a user's config: the server fields, and `output_dir`, `run_dir`'s former name.
REFUSED_FIELDS = (*SERVER_FIELDS, "output_dir")
# Server paths a user may send only as null (the value older job rows return).
NULLABLE_FIELDS = ("eval_dataset", "priors_cache_dir")


def param_of(error: ErrorDetails, prefix: str = "config") -> str:
    """`<prefix>.<field path>` for one pydantic error (the bare path when `prefix` is empty: an
    evaluation's fields are top-level); cross-field errors name their field first."""
    loc = ".".join(map(str, error["loc"]))
    if not loc:
        match = re.match(r"(?:Value error, )?([a-z_][a-z0-9_.]*): ", error.get("msg", ""))
        loc = match.group(1) if match else ""
    if not prefix:
        return loc or "body"
    return f"{prefix}.{loc}" if loc else prefix


def non_finite(value: Any, path: str) -> str | None:
    """Path of the first NaN/Infinity in a JSON value (Python's json accepts them; JSON does not).

    Iterative: the body's nesting is bounded only by the request size."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, dict):
            stack.extend((child, f"{where}.{key}") for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in reversed(list(enumerate(item))))
    return None


def check_user_config(config: dict[str, Any]) -> None:
    """Refuse server fields and non-finite numbers in a user's config; Invalid names the field."""
    for key in dict.fromkeys((*REFUSED_FIELDS, *NULLABLE_FIELDS)):
        if key in config and (key not in NULLABLE_FIELDS or config[key] is not None):
            raise Invalid(f"config.{key} is chosen by the server; leave it out", f"config.{key}")
    if bad := non_finite(config, "config"):
        raise Invalid(f"{bad} must be a finite number (NaN and Infinity are not JSON)", bad)
    if bad := big_integer(config, "config"):
        raise Invalid(f"{bad} is out of range (integers are limited to +-2**53)", bad)


def validate_train_config(fields: dict[str, Any]) -> TrainConfig:
    """`TrainConfig` from complete fields, its paths checked; Invalid names the field at fault."""
    try:
        train_config = TrainConfig.model_validate(fields)
        train_config.check_paths()
    except ValidationError as exc:
        message = format_validation_error(exc, "config").replace("\n", "; ")
        raise Invalid(message, param_of(exc.errors()[0])) from None
    except (ValueError, TypeError) as exc:  # ConfigError from check_paths, or a stray validator
        # The model's directories are the request's `model`, not config fields the user set.
        param = "model" if re.match(r"(base_)?model: ", str(exc)) else "config"
        raise Invalid(f"invalid config: {exc}", param) from None
    return train_config


def model_defaults(path: Path, model: str) -> dict[str, Any]:
    """The config defaults the model directory `path` (named `model`) recommends ({} if none);
    Invalid for an unusable `basis_defaults.json` (named, so the admin knows which file to fix)."""
    try:
        return read_model_defaults(path)
    except ModelDefaultsError as exc:
        raise Invalid(f"model {model!r} has unusable training defaults: {exc}", "model") from None


def filled_by_model(defaults: dict[str, Any], config: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the model defaults that `config` leaves out (what `apply_model_defaults`
    fills), in the defaults' order."""
    paths = []
    for key, value in defaults.items():
        if key not in config:
            paths.append(prefix + key)
        elif isinstance(value, dict) and isinstance(config[key], dict):
            paths.extend(filled_by_model(value, config[key], f"{prefix}{key}."))
    return paths


def blame_model_defaults(exc: Invalid, model: str, filled: list[str]) -> Invalid:
    """`exc` with a note when the field it names was filled by the model's defaults."""
    field = (exc.param or "").removeprefix("config.")
    if any(field == path or field.startswith(path + ".") for path in filled):
        return Invalid(f"{exc.message} (this value is model {model!r}'s default: set "
                       f"config.{field} to override it)", exc.param)
    return exc


def resolve_train_config(session: Session, settings: Settings, job_id: str, model: str,
                         dataset: Dataset, config: dict[str, Any]) -> TrainConfig:
    """The `TrainConfig` job `job_id` runs: its stored (or submitted) `config` over the model's
    recommended defaults, plus this machine's server fields; 404/422 for a model its owner (the
    dataset's) cannot use, Invalid naming the field for a bad config."""
    resolved = resolve_model(session, settings, dataset.owner_id, model)
    defaults = model_defaults(resolved.path, model)
    try:
        return validate_train_config({
            **apply_model_defaults(defaults, config),
            "model": str(resolved.path),
            "base_model": str(resolved.base) if resolved.base is not None else None,
            "dataset": str(dataset_path(settings, dataset)),
            "run_dir": str(settings.job_run_dir(job_id)),
            # Per owner: a shared cache hit would tell one user that another trained on the same rows.
            "priors_cache_dir": str(settings.storage_dir / "priors" / dataset.owner_id),
        })
    except Invalid as exc:
        raise blame_model_defaults(exc, model, filled_by_model(defaults, config)) from None


def stored_config(train_config: TrainConfig) -> dict[str, Any]:
    """What a job row keeps of its config: every field with its default, minus the server fields."""
    return train_config.model_dump(mode="json", exclude=set(SERVER_FIELDS))


def default_config() -> dict[str, Any]:
    """The config a job gets for every field it leaves out (what `stored_config` would store for an
    empty one), for forms that start from the server's defaults rather than a copy of them."""
    return stored_config(TrainConfig.model_construct(model="", dataset=""))
