"""Resource limits on a job, checked at creation against the deployment's settings (issue 18).

`TrainConfig` bounds every field absolutely (far below int64); this module adds what only the
server knows: the admin's limits (`Settings.job_*`), the model's context length and the dataset's
size. Each refusal is an `Invalid` naming the field and the limit, so the user knows what to change;
nothing is written before these checks pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.services.errors import Invalid
from core.settings import Settings

# Largest integer JSON carries exactly (2**53): anything bigger in a config is a typo or an attack,
# and some stores (Postgres integer columns, SQLite) cannot hold it.
MAX_JSON_INT = 2**53


def big_integer(value: Any, path: str) -> str | None:
    """Path of the first integer beyond +-2**53 in a JSON value, iteratively (nesting is bounded
    only by the request size)."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_JSON_INT:
            return where
        if isinstance(item, dict):
            stack.extend((child, f"{where}.{key}") for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}") for i, child in enumerate(item))
    return None


def model_max_positions(model_path: Path) -> int | None:
    """The model's context length from its config.json, if it states one."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _over(field: str, value: Any, limit: Any, why: str, prefix: str = "config.") -> Invalid:
    return Invalid(f"{prefix}{field} is {value}; {why} (limit {limit})", f"{prefix}{field}")


def check_response_length(tokens: int, settings: Settings, model_path: Path, *, field: str,
                          prefix: str = "config.") -> None:
    """Refuse a response cap (`field`) above the server's, or one the model's context cannot hold."""
    if tokens > settings.job_max_new_tokens:
        raise _over(field, tokens, settings.job_max_new_tokens, "this server caps response length",
                    prefix)
    positions = model_max_positions(model_path)
    if positions is not None and tokens >= positions:
        raise _over(field, tokens, positions - 1,
                    f"the model has {positions} positions, prompt included", prefix)


def check_worker_resources(config: Any, settings: Settings, prefix: str = "config.") -> None:
    """Refuse reward processes, CPU threads or a device (the fields of a training job's and an
    evaluation's config alike) that the server's workers do not offer."""
    if config.reward_workers > settings.job_max_reward_workers:
        raise _over("reward_workers", config.reward_workers, settings.job_max_reward_workers,
                    "more reward processes than the worker's cores only thrash", prefix)
    if config.cpu_threads is not None and config.cpu_threads > settings.job_max_cpu_threads:
        raise _over("cpu_threads", config.cpu_threads, settings.job_max_cpu_threads,
                    "more threads than the worker's cores only thrash", prefix)
    if config.device not in settings.job_devices:
        raise Invalid(f"{prefix}device {config.device!r} is not available on this server's workers; "
                      f"choose one of {', '.join(settings.job_devices)}", f"{prefix}device")


def check_job_limits(config: Any, settings: Settings, *, model_path: Path, dataset_rows: int) -> None:
    """Refuse a validated TrainConfig that exceeds the deployment's limits or its inputs."""
    if config.max_steps > settings.job_max_steps:
        raise _over("max_steps", config.max_steps, settings.job_max_steps,
                    "this server's administrator caps steps per job")
    check_response_length(config.sampling.max_new_tokens, settings, model_path,
                          field="sampling.max_new_tokens")
    if config.n0 > settings.job_max_n0:
        raise _over("n0", config.n0, settings.job_max_n0, "this server caps offline rollouts per prompt")
    per_step = config.batch_size * config.rollouts_per_prompt
    if per_step > settings.job_max_rollouts_per_step:
        raise _over("batch_size", f"{config.batch_size} x {config.rollouts_per_prompt} rollouts",
                    settings.job_max_rollouts_per_step, "this server caps sequences per step")
    # trainer.data.split holds out round(eval_fraction * rows) rows (the eval file is never a user's).
    train_rows = dataset_rows - round(config.eval_fraction * dataset_rows)
    if config.batch_size > train_rows:
        raise _over("batch_size", config.batch_size, train_rows,
                    f"the dataset has {dataset_rows} rows ({train_rows} for training after the "
                    "held-out split)")
    if config.eval_size is not None and config.eval_size > dataset_rows:
        raise _over("eval_size", config.eval_size, dataset_rows, "the dataset has fewer rows")
    check_worker_resources(config, settings)


def check_queue(settings: Settings, queue: str) -> None:
    """Only the queues the administrator lists (default: the worker queue) take jobs."""
    allowed = settings.job_queues or [settings.worker_queue]
    if queue not in allowed:
        raise Invalid(f"queue {queue!r} has no workers on this server; choose one of "
                      f"{', '.join(allowed)}", "queue")
