"""Request and response bodies: one family per resource (`XCreate`, `XPublic`, `XsPublic`).

Lists follow one shape everywhere: `{"object": "list", "data": [...], "has_more", "next_cursor"}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class ListPublic(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    next_cursor: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    version: str


class Readiness(BaseModel):
    """Each check is `{"ok": bool, ...what it saw}` (core/services/health.py)."""

    status: Literal["ok", "degraded"]
    database: dict[str, Any] = Field(default_factory=dict)
    broker: dict[str, Any] = Field(default_factory=dict)
    disk: dict[str, Any] = Field(default_factory=dict)
    workers: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    version: str


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    object: Literal["dataset"] = "dataset"
    name: str
    filename: str
    rows: int
    bytes: int
    sha256: str
    created_at: datetime


DatasetsPublic = ListPublic[DatasetPublic]
DatasetRowsPublic = ListPublic[dict[str, Any]]


class ModelPublic(BaseModel):
    id: str = Field(description="The name to pass as `model` when creating a job.")
    object: Literal["model"] = "model"
    name: str
    config_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Config fields this model recommends (its basis_defaults.json): a job on it "
                    "gets them for the fields its `config` leaves out, over the generic defaults "
                    "of GET /v1/components. {} = none (or an unusable file: creating a job says why).")


ModelsPublic = ListPublic[ModelPublic]


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str = Field(max_length=64, description="A dataset id from POST /v1/datasets.")
    model: str = Field(max_length=300, description="A model name from GET /v1/models.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields except model, dataset, run_dir and priors_cache_dir (set by "
                    "the server).")
    queue: str | None = Field(None, max_length=64,
                              description="Worker queue (GPU pool); default BASIS_WORKER_QUEUE.")


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
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
    latest_metrics: dict[str, float | None] = Field(
        default_factory=dict, description="Each metric's value at the job's last logged step.")


JobsPublic = ListPublic[JobPublic]


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int = Field(description="Increasing; pass the last one seen as `after` to poll.")
    object: Literal["event"] = "event"
    job_id: str
    created_at: datetime
    ts: datetime
    kind: str
    level: str
    message: str
    data: dict[str, Any] | None


EventsPublic = ListPublic[EventPublic]


class SamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int = Field(description="Increasing; pass the last one seen as `after` for the next page.")
    object: Literal["sample"] = "sample"
    job_id: str
    step: int
    index: int = Field(description="Position of the rollout in the step's batch.")
    prompt_id: str
    prompt: str
    completion: str
    answer: str = Field(description="The dataset's expected answer.")
    reward: float | None = Field(description="null where the reward could not score the completion.")
    advantage: float
    baseline: float | None
    finish_reason: str = Field(description="'stop' (end of sequence) or 'length' (max_new_tokens).")


SamplesPublic = ListPublic[SamplePublic]


class LogLinePublic(BaseModel):
    id: int = Field(description="Increasing; pass the last one seen as `after` to follow the log.")
    object: Literal["log_line"] = "log_line"
    ts: datetime
    level: str
    kind: str
    line: str = Field(description="The line as `basis jobs logs` prints it.")


LogLinesPublic = ListPublic[LogLinePublic]


class MetricSeries(BaseModel):
    name: str
    steps: list[int]
    values: list[float | None] = Field(description="null where the value was NaN or infinite.")


MetricsPublic = ListPublic[MetricSeries]


class HistogramPublic(BaseModel):
    step: int = Field(description="The last step the histogram covers (= step_to).")
    step_from: int = Field(description="First step merged into it; equals `step` unless downsampled.")
    step_to: int = Field(description="Last step merged into it.")
    name: str
    edges: list[float] = Field(description="(bins+1,) bin edges.")
    counts: list[int] = Field(description="(bins,) samples per bin, summed over the merged steps.")


HistogramsPublic = ListPublic[HistogramPublic]


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    object: Literal["checkpoint"] = "checkpoint"
    job_id: str
    step: int
    bytes: int
    created_at: datetime


CheckpointsPublic = ListPublic[CheckpointPublic]


class WorkerPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str = Field(description="Celery node name, `<queue>-<pid>@<hostname>`.")
    object: Literal["worker"] = "worker"
    hostname: str
    pid: int
    queues: list[str]
    engines: list[str] = Field(description="Rollout engines installed on the worker.")
    gpus: int
    max_processes: int = Field(description="Most processes (GPUs, or CPU ranks) one job may use there.")
    current_job_id: str | None
    alive: bool = Field(False, description="Not stopped, and a heartbeat within "
                        "BASIS_WORKER_ALIVE_SECONDS.")
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


WorkersPublic = ListPublic[WorkerPublic]
