"""Evaluations: a second kind of work on the job lifecycle (`jobs.kind` "eval", migration 0005).

Choices:
- An evaluation is a `jobs` row, so claim, lease, heartbeat, events, cancel and the orphan sweep
  are the training job's (core/jobs/lifecycle.py); the worker dispatches on `kind`
  (worker/tasks.py) to `trainer.evaluate.evaluate`, the code path of a training run's held-out eval.
- Its options are validated at creation as the `EvalConfig` the worker will run, server paths
  filled by `resolve_eval_config` (the worker's resolution too), so a bad field is a 422 naming
  it; the row stores the options with their defaults (`jobs.config`), `estimator` "eval" and
  `max_steps` = the number of batches the worker will log.
- A model's recommended training defaults (`basis_defaults.json`, trainer/model_defaults.py) give
  an evaluation that leaves them out its `reward` (with its `reward_options`) and
  `max_new_tokens` (`sampling.max_new_tokens`): the demo model is scored as its jobs score it
  (exact match, 8 tokens), so an evaluation with the defaults measures what the job's held-out
  eval measures, not `math` over 256 tokens. Sampling temperature stays the evaluation's own
  (greedy): a job's rollout temperature is for exploring, not measuring.
- What it measured is read back from the metrics it logged (`trainer.evaluate.EvalSummary.metrics`,
  at its last step: every row so far), and its completions from `rollout_samples`, one row per
  sample with `index` = row * samples_per_prompt + sample: no table of its own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import workers
from core.jobs.config import model_defaults, non_finite, param_of
from core.jobs.events import record_event
from core.jobs.limits import big_integer, check_response_length, check_worker_resources
from core.jobs.service import admit, get_job, list_jobs
from core.models import Dataset, Job, RolloutSample, User, new_id
from core.services.catalog import resolve_model
from core.services.datasets import dataset_path, get_dataset
from core.services.errors import Invalid
from core.services.pagination import Page
from core.settings import Settings
from core.status import JobKind, JobStatus
from trainer.config import EvalConfig, format_validation_error

SERVER_FIELDS = ("model", "base_model", "dataset")


def model_eval_defaults(defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """What a model's training defaults give an evaluation that leaves the field out (module
    docstring): `reward` with its `reward_options`, and `max_new_tokens`."""
    out: dict[str, Any] = {}
    if "reward" not in options and isinstance(defaults.get("reward"), str):
        out["reward"] = defaults["reward"]
        if "reward_options" not in options and isinstance(defaults.get("reward_options"), dict):
            out["reward_options"] = defaults["reward_options"]
    sampling = defaults.get("sampling")
    if "max_new_tokens" not in options and isinstance(sampling, dict) \
            and isinstance(sampling.get("max_new_tokens"), int):
        out["max_new_tokens"] = sampling["max_new_tokens"]
    return out


def resolve_eval_config(session: Session, settings: Settings, model: str, dataset: Dataset,
                        options: dict[str, Any]) -> EvalConfig:
    """The `EvalConfig` an evaluation runs: its options plus this machine's paths (the model as
    the dataset's owner sees the catalogue, an adapter with its base); 404/422 for a model they
    cannot use, Invalid naming the field for a bad option."""
    for key in SERVER_FIELDS:
        if key in options:
            raise Invalid(f"{key} is chosen by the server; leave it out of the options", key)
    if bad := non_finite(options, "") or big_integer(options, ""):
        raise Invalid(f"{bad.lstrip('.')} must be a finite number within +-2**53", bad.lstrip("."))
    resolved = resolve_model(session, settings, dataset.owner_id, model)
    recommended = model_eval_defaults(model_defaults(resolved.path, model), options)
    try:
        config = EvalConfig.model_validate({
            **recommended, **options, "model": str(resolved.path),
            "base_model": str(resolved.base) if resolved.base is not None else None,
            "dataset": str(dataset_path(settings, dataset))})
        config.check_paths()
    except ValidationError as exc:
        raise Invalid(format_validation_error(exc, "eval").replace("\n", "; "),
                      param_of(exc.errors()[0], prefix="")) from None
    except ValueError as exc:  # ConfigError from check_paths: "model: ..." or "dataset: ..."
        field = {"dataset": "dataset_id", "base_model": "model"}.get(str(exc).partition(":")[0],
                                                                   "model")
        raise Invalid(f"invalid evaluation: {exc}", field) from None
    return config


def stored_options(config: EvalConfig) -> dict[str, Any]:
    """What an evaluation row keeps: every option with its default, minus the server paths."""
    return config.model_dump(mode="json", exclude=set(SERVER_FIELDS))


def _check_limits(config: EvalConfig, settings: Settings, rows: int) -> None:
    """The deployment's limits (core/settings.py `job_*`, `eval_max_samples`) on an evaluation."""
    check_response_length(config.max_new_tokens, settings, Path(config.model),
                          field="max_new_tokens", prefix="")
    per_call = config.batch_rows * config.samples_per_prompt
    if per_call > settings.job_max_rollouts_per_step:
        raise Invalid(f"batch_rows is {config.batch_rows} x {config.samples_per_prompt} samples; this "
                      f"server caps sequences per generation (limit "
                      f"{settings.job_max_rollouts_per_step})", "batch_rows")
    samples = rows * config.samples_per_prompt
    if samples > settings.eval_max_samples:
        fits = settings.eval_max_samples // config.samples_per_prompt
        raise Invalid(f"{rows} rows x {config.samples_per_prompt} samples_per_prompt = {samples} "
                      f"samples; this server caps one evaluation at {settings.eval_max_samples} "
                      f"(BASIS_EVAL_MAX_SAMPLES): set max_rows to at most {fits}"
                      + (" or ask for fewer samples_per_prompt" if config.samples_per_prompt > 1 else ""),
                      "max_rows")
    check_worker_resources(config, settings, prefix="")


def create_eval(session: Session, settings: Settings, owner: User, *, model: str, dataset_id: str,
                options: dict[str, Any], queue: str | None = None) -> Job:
    """Validate and insert a queued evaluation with its first event; commits. The caller then
    enqueues it, exactly like a training job."""
    dataset = get_dataset(session, owner, dataset_id)
    queue = admit(session, settings, owner, queue, "evaluation")
    config = resolve_eval_config(session, settings, model, dataset, options)
    rows = min(dataset.rows, config.max_rows or dataset.rows)
    _check_limits(config, settings, rows)
    tp = config.engine_options.get("tensor_parallel_size", 1)
    try:
        waiting = workers.check_capacity(session, settings, workers.Requirement(
            queue=queue, engine=config.engine, tensor_parallel_size=tp if isinstance(tp, int) else 1))
    except Invalid as exc:  # it names a training job's `config.` fields; an evaluation's are top level
        raise Invalid(exc.message, (exc.param or "").removeprefix("config.") or None) from None
    job = Job(id=new_id("eval"), owner_id=owner.id, dataset_id=dataset.id, model=model, queue=queue,
              kind=JobKind.eval.value, config=stored_options(config), estimator="eval",
              max_steps=max(1, math.ceil(rows / config.batch_rows)), status=JobStatus.queued)
    session.add(job)
    session.flush()
    record_event(session, job.id, "status", "Evaluation created; waiting for a worker"
                 + (f" ({waiting})" if waiting else ""), {"status": JobStatus.queued.value})
    session.commit()
    return job


def get_eval(session: Session, owner: User, eval_id: str) -> Job:
    """The owner's evaluation `eval_id`; 404 if missing, someone else's or a training job."""
    return get_job(session, owner, eval_id, JobKind.eval)


def list_evals(session: Session, owner: User, *, status: str | None, after: str | None,
               limit: int) -> Page[Job]:
    """The owner's evaluations, newest first, optionally only those in `status`."""
    return list_jobs(session, owner, status=status, after=after, limit=limit, kind=JobKind.eval)


def results(metrics: dict[str, float | None]) -> dict[str, Any] | None:
    """An evaluation's results from its latest metrics (every row evaluated so far); None before
    its first batch."""
    if metrics.get("eval/rows") is None:
        return None
    rows = int(metrics["eval/rows"] or 0)
    k = int(metrics.get("eval/samples_per_prompt") or 0)
    pass_at = {name.removeprefix("eval/pass@"): value for name, value in metrics.items()
               if name.startswith("eval/pass@")}
    return {"rows": rows, "samples_per_prompt": k, "samples": rows * k,
            "accuracy": metrics.get("eval/accuracy"), "mean_reward": metrics.get("eval/mean_reward"),
            "pass_at_k": dict(sorted(pass_at.items(), key=lambda item: int(item[0]))),
            "mean_response_tokens": metrics.get("eval/response_tokens_mean"),
            "unscorable_frac": metrics.get("eval/unscorable_frac")}


def list_samples(session: Session, job: Job, *, row: int | None, after: int | None,
                 limit: int) -> tuple[list[RolloutSample], bool]:
    """Samples of evaluation `job` (of one dataset `row` if given) with id > `after`, in the order
    they were written (row order), and whether more follow."""
    stmt = select(RolloutSample).where(RolloutSample.job_id == job.id)
    if row is not None:
        k = int(job.config.get("samples_per_prompt", 1))
        stmt = stmt.where(RolloutSample.index >= row * k, RolloutSample.index < (row + 1) * k)
    if after is not None:
        stmt = stmt.where(RolloutSample.id > after)
    found = list(session.scalars(stmt.order_by(RolloutSample.id).limit(limit + 1)))
    return found[:limit], len(found) > limit

