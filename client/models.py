"""Response and request models of the BASIS REST API, GENERATED from its OpenAPI schema.

Do not edit: run `python scripts/gen_client_models.py` after changing api/schemas.py (or a route's
response model); tests/client/test_client_contract.py fails until this file matches the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint; follow `next_cursor` while `has_more`."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    next_cursor: str | None = None


class CheckpointPublic(BaseModel):
    id: str
    object: Literal["checkpoint"] = "checkpoint"
    job_id: str
    step: int
    bytes: int
    created_at: datetime


class Component(BaseModel):
    name: str
    # first line of the component's documentation
    description: str
    # JSON Schema of the component's options; null = it checks them itself
    options: dict[str, Any] | None


class EstimatorComponent(BaseModel):
    name: str
    # first line of the component's documentation
    description: str
    # JSON Schema of the component's options; null = it checks them itself
    options: dict[str, Any] | None
    # rollouts per prompt it needs (1 = single-rollout)
    min_rollouts: int


class ComponentsPublic(BaseModel):
    estimators: list[EstimatorComponent]
    rewards: list[Component]
    engines: list[Component]
    # The job config's default for every field a user may set (POST /v1/jobs `config`)
    defaults: dict[str, Any]


class DatasetPublic(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    name: str
    filename: str
    rows: int
    bytes: int
    sha256: str
    created_at: datetime


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class EventPublic(BaseModel):
    # Increasing; pass the last one seen as `after` to poll.
    id: int
    object: Literal["event"] = "event"
    job_id: str
    created_at: datetime
    ts: datetime
    kind: str
    level: str
    message: str
    data: dict[str, Any] | None


class ValidationError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: Any | None = None
    ctx: dict[str, Any] = Field(default_factory=dict)


class HTTPValidationError(BaseModel):
    detail: list[ValidationError] = Field(default_factory=list)


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    version: str


class HistogramPublic(BaseModel):
    # The last step the histogram covers (= step_to).
    step: int
    # First step merged into it; equals `step` unless downsampled.
    step_from: int
    # Last step merged into it.
    step_to: int
    name: str
    # (bins+1,) bin edges.
    edges: list[float]
    # (bins,) samples per bin, summed over the merged steps.
    counts: list[int]


class JobCreate(BaseModel):
    # A dataset id from POST /v1/datasets.
    dataset_id: str
    # A model name from GET /v1/models.
    model: str
    # TrainConfig fields except model, dataset, run_dir and priors_cache_dir (set by the server).
    config: dict[str, Any] = Field(default_factory=dict)
    # Worker queue (GPU pool); default BASIS_WORKER_QUEUE.
    queue: str | None = None


class JobPublic(BaseModel):
    id: str
    object: Literal["job"] = "job"
    status: str
    model: str
    dataset_id: str | None
    estimator: str
    config: dict[str, Any]
    error: str | None
    queue: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    current_step: int
    max_steps: int | None
    # Each metric's value at the job's last logged step.
    latest_metrics: dict[str, float | None] = Field(default_factory=dict)


JobStatus = Literal["queued", "starting", "estimating_priors", "running", "succeeded", "failed", "cancelled"]


class LogLinePublic(BaseModel):
    # Increasing; pass the last one seen as `after` to follow the log.
    id: int
    object: Literal["log_line"] = "log_line"
    ts: datetime
    level: str
    kind: str
    # The line as `basis jobs logs` prints it.
    line: str


class MetricSeries(BaseModel):
    name: str
    steps: list[int]
    # null where the value was NaN or infinite.
    values: list[float | None]


class ModelPublic(BaseModel):
    # The name to pass as `model` when creating a job.
    id: str
    object: Literal["model"] = "model"
    name: str
    # Config fields this model recommends (its basis_defaults.json): a job on it gets them for the fields its `config` leaves out, over the generic defaults of GET /v1/components. {} = none (or an unusable file: creating a job says why).
    config_defaults: dict[str, Any] = Field(default_factory=dict)


class Readiness(BaseModel):
    """Each check is `{"ok": bool, ...what it saw}` (core/services/health.py)."""

    status: Literal["ok", "degraded"]
    database: dict[str, Any] = Field(default_factory=dict)
    broker: dict[str, Any] = Field(default_factory=dict)
    disk: dict[str, Any] = Field(default_factory=dict)
    workers: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    version: str


class SamplePublic(BaseModel):
    # Increasing; pass the last one seen as `after` for the next page.
    id: int
    object: Literal["sample"] = "sample"
    job_id: str
    step: int
    # Position of the rollout in the step's batch.
    index: int
    prompt_id: str
    prompt: str
    completion: str
    # The dataset's expected answer.
    answer: str
    # null where the reward could not score the completion.
    reward: float | None
    advantage: float
    baseline: float | None
    # 'stop' (end of sequence) or 'length' (max_new_tokens).
    finish_reason: str


class WorkerPublic(BaseModel):
    # Celery node name, `<queue>-<pid>@<hostname>`.
    id: str
    object: Literal["worker"] = "worker"
    hostname: str
    pid: int
    queues: list[str]
    # Rollout engines installed on the worker.
    engines: list[str]
    gpus: int
    # Most processes (GPUs, or CPU ranks) one job may use there.
    max_processes: int
    current_job_id: str | None
    # Not stopped, and a heartbeat within BASIS_WORKER_ALIVE_SECONDS.
    alive: bool = False
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
