"""Worker-only tuning knobs (`BASIS_WORKER_*`), kept apart from `core.settings.Settings`.

Choices:
- These only matter to the process that runs jobs, so they live here rather than in the shared
  settings every API request loads.
- Liveness of a running job is a heartbeat in the database (`jobs.updated_at`), not the broker's
  view of unacknowledged messages: the embedded SQLite broker forgets a message its consumer took
  when that consumer is SIGKILLed, and Redis only hands it back after its visibility timeout. A job
  whose heartbeat is older than `stale_after_seconds` is considered orphaned and may be taken over.
- A job still `queued` after `requeue_queued_after_seconds` is sent again by the sweep (the broker
  may have been flushed or restarted empty under running workers; worker/reconcile.py). Minutes,
  not seconds: on a merely long queue each such job gets one extra message per interval and worker.
- The Redis visibility timeout is long on purpose: a redelivered copy of a job that is still
  running is harmless (the second worker sees a fresh heartbeat and drops it), but a short timeout
  would make those copies frequent on multi-day runs.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Every field maps to `BASIS_WORKER_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="BASIS_WORKER_", extra="ignore")

    heartbeat_seconds: float = Field(10.0, gt=0, description="How often a running job touches its row.")
    stale_after_seconds: float = Field(
        120.0, gt=0, description="A job silent this long is orphaned and may be taken over."
    )
    sweep_seconds: float = Field(
        60.0, gt=0, description="How often each worker looks for orphaned jobs to re-enqueue."
    )
    requeue_queued_after_seconds: float = Field(
        600.0, ge=0,
        description="The sweep re-sends a job still queued this long after its row last changed; 0: off.",
    )
    visibility_timeout_seconds: int = Field(
        12 * 3600, gt=0, description="Redis: when an unacknowledged message is handed out again."
    )
    db_retry_seconds: float = Field(
        900.0, gt=0, description="How long a database write keeps retrying before the job gives up."
    )
    sample_keep_steps: int = Field(
        1000, ge=0,
        description="Keep the rollout samples of this many latest steps per job (older ones are "
                    "deleted as the job trains); 0: keep all.",
    )
    pool: str = Field("solo", description="Celery pool: solo runs the job in the worker process.")
    gpus: int | None = Field(
        None, ge=0, description="GPUs this worker advertises; default torch.cuda.device_count().")
    max_processes: int | None = Field(
        None, ge=1, description="Most processes (ranks) one job may use here; default the GPU "
        "count, or 2 on a machine without GPUs (two gloo ranks).")

    @model_validator(mode="after")
    def _stale_outlives_heartbeat(self) -> WorkerSettings:
        if self.stale_after_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(
                "stale_after_seconds must exceed twice heartbeat_seconds, or live jobs look orphaned"
            )
        return self


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    """The process-wide worker settings, read once from the environment."""
    return WorkerSettings()
