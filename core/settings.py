"""Service settings: one `Settings` object read from `BASIS_*` environment variables.

Choices:
- Everything has an embedded default derived from `BASIS_DATA_DIR` (default `./data`, made absolute
  at load time so a later `chdir` cannot move it): SQLite database, SQLite-backed Celery broker,
  storage and model roots all live under it, so `basis up` needs no configuration at all.
- `BASIS_MODEL_ROOTS` is a comma list (not JSON) because that is what people type in a shell.
- Limits on uploads are settings, not constants, so a lab can raise them without a code change.
- `get_settings()` caches one instance per process; tests build their own `Settings(...)` and pass
  it to `api.main.create_app(settings=...)` instead of mutating the environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """All service configuration; every field maps to `BASIS_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="BASIS_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="Root of every embedded default.")
    # Typed without None (empty / absent means "derive from data_dir", filled by the validators) so
    # every reader gets a `str` / `Path` without narrowing.
    database_url: str = Field("", description="SQLAlchemy URL; default (empty) SQLite in data_dir.")
    broker_url: str = Field("", description="Celery broker; default (empty) SQLite in data_dir.")
    storage_dir: Path = Field(Path("storage"), description="Datasets and job run dirs; default data_dir/storage.")
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Comma list of dirs holding HF model dirs; default data_dir/models."
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    dashboard_port: int = Field(8501, ge=1, le=65535)
    api_url: str = Field("http://127.0.0.1:8000", description="Where the CLI client and dashboard find the API.")
    api_key: str | None = Field(None, description="Key used by the CLI client and dashboard.")
    worker_queue: str = Field("gpu", description="Celery queue new jobs are sent to.")
    # The worker registry (core/workers.py): read by the API's job check and by every worker.
    worker_alive_seconds: float = Field(
        60.0, gt=0, description="A worker whose last heartbeat is older than this counts as dead.")
    worker_forget_seconds: float = Field(
        7 * 24 * 3600.0, gt=0, description="A dead worker's row (and the queue it served) is "
        "forgotten this long after its last heartbeat.")
    require_live_worker: bool = Field(
        False, description="Refuse a job when no live worker consumes its queue (default: accept "
        "it while that queue's workers are down or none has registered yet; docs/deployment.md).")

    # Limits on hostile or accidental input (issue 8).
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="Largest dataset upload.")
    max_request_bytes: int = Field(1024 * 1024, gt=0, description="Largest non-upload request body.")
    max_dataset_rows: int = Field(1_000_000, gt=0)
    max_line_bytes: int = Field(1024 * 1024, gt=0, description="Longest JSONL line.")
    max_json_depth: int = Field(32, gt=0, description="Deepest JSON nesting in a dataset row.")
    max_metric_points: int = Field(5000, gt=0, description="Upper bound accepted for ?max_points=.")

    # Capacity of the API process (issue 18): a request past `api_max_inflight` is answered 503 with
    # Retry-After at once instead of queueing; `api_threads` is the thread pool sync routes run in;
    # a route waits at most `db_pool_timeout` s for one of db_pool_size + db_max_overflow connections.
    api_threads: int = Field(40, gt=0, description="Threads for the API's sync routes.")
    api_max_inflight: int = Field(64, gt=0, description="Requests served at once before shedding load.")
    db_pool_size: int = Field(10, gt=0, description="Pooled database connections per process.")
    db_max_overflow: int = Field(20, ge=0, description="Extra connections under a burst.")
    db_pool_timeout: float = Field(10.0, gt=0, description="Seconds a request waits for a connection.")

    # Disk (issue 18): below this much free space on the storage volume uploads and job creation
    # get 507, and a job's checkpoint is refused before it is written.
    min_free_disk_mb: int = Field(200, ge=0, description="Free-space floor of the storage volume (MB).")
    # /v1/health/ready calls an active job stuck when its heartbeat is older than this.
    health_stale_after_seconds: float = Field(120.0, gt=0, description="Heartbeat age of a stuck job.")

    # Models pulled from a Hugging Face hub (issue 16; core/services/model_store.py). The hub and
    # its token are huggingface_hub's own HF_ENDPOINT and HF_TOKEN, read when a pull starts.
    model_max_bytes: int = Field(
        40 * 2**30, gt=0, description="Largest model (sum of its pulled files) an admin may pull.")
    model_max_active_pulls: int = Field(2, gt=0, description="Pulls downloading at once per API process.")

    # Per-user quotas (issue 18); 0 = no quota. Refused with 429 (jobs) or 507 (bytes), naming both.
    quota_active_jobs: int = Field(0, ge=0, description="Jobs a user may have queued or running at once.")
    quota_dataset_bytes: int = Field(0, ge=0, description="Bytes of datasets a user may store.")
    # Checked by the worker before each checkpoint is written: the job's own older checkpoints
    # are removed first (its newest stays, to resume from); if that is not enough the job fails
    # saying so, resumable by a retry once space is freed. Other jobs' checkpoints are never touched.
    quota_checkpoint_bytes: int = Field(0, ge=0, description="Bytes of checkpoints a user may store.")
    quota_checkpoints: int = Field(0, ge=0, description="Checkpoints a user may store.")

    # Resource limits on a job, checked at creation (issue 18; core/jobs/limits.py). A lab
    # raises them for its hardware; the defaults fit one machine.
    job_max_steps: int = Field(100_000, gt=0, description="Most training steps per job.")
    job_max_new_tokens: int = Field(4096, gt=0, description="Longest response a job may sample.")
    job_max_n0: int = Field(64, ge=0, description="Most BASIS offline rollouts per prompt.")
    job_max_rollouts_per_step: int = Field(
        4096, gt=0, description="Most sequences per step (batch_size x rollouts_per_prompt).")
    job_max_reward_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, gt=0,
        description="Most reward processes per job; default: this machine's cores.")
    job_max_cpu_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1, gt=0,
        description="Most torch CPU threads per job; default: this machine's cores.")
    eval_max_samples: int = Field(
        200_000, gt=0, description="Most samples (rows x samples_per_prompt) of one evaluation.")
    job_devices: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["auto", "cpu"],
        description="Comma list of `device` values jobs may ask for; add cuda where workers have GPUs.")
    job_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma list of queues jobs may name; empty = worker_queue only.")

    @field_validator("model_roots", "job_devices", "job_queues", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_storage_dir(cls, values: Any) -> Any:
        # Before validation, so the field keeps its `Path` type: data_dir/storage when not given.
        if isinstance(values, dict) and not values.get("storage_dir"):
            data_dir = values.get("data_dir") or cls.model_fields["data_dir"].default
            values = {**values, "storage_dir": Path(data_dir) / "storage"}
        return values

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'basis.sqlite'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
        self.storage_dir = self.storage_dir.expanduser().resolve()
        roots = self.model_roots or [self.data_dir / "models"]
        self.model_roots = [root.expanduser().resolve() for root in roots]
        return self

    @property
    def datasets_dir(self) -> Path:
        """Where uploaded datasets are stored, one file per dataset id."""
        return self.storage_dir / "datasets"

    @property
    def jobs_dir(self) -> Path:
        """Parent of every job's run directory (the trainer's `run_dir`)."""
        return self.storage_dir / "jobs"

    def job_run_dir(self, job_id: str) -> Path:
        """The run directory of one job; checkpoints live in `<run dir>/checkpoints/`."""
        return self.jobs_dir / job_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
