"""Request and response bodies: one family per resource (`XCreate`, `XPublic`, `XsPublic`).

Lists follow one shape everywhere: `{"object": "list", "data": [...], "has_more", "next_cursor"}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from trainer.config import EvalOptions

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
    source: Literal["local", "hub", "export"] = Field(
        "local", description="local: a directory copied into the models root by hand; hub: pulled "
        "from a model hub; export: exported from a job's checkpoint.")
    owned: bool = Field(False, description="True for your own exports (only you see them).")
    owned_by: str = Field("platform", description="'you' for your exports, else 'platform' (shared).")
    revision: str | None = Field(None, description="The pinned hub commit of a pulled model.")
    bytes: int | None = Field(None, description="Size of the model directory.")
    architecture: str | None = None
    parameter_count: int | None = Field(
        None, description="Parameters in the directory's safetensors (an adapter's own).")
    chat_template: bool = Field(False, description="The tokenizer has a chat template.")
    base_model: str | None = Field(
        None, description="The model an export was trained from (an adapter loads on top of it).")
    format: Literal["full", "adapter"] = Field(
        "full", description="full: complete weights; adapter: a PEFT LoRA adapter over base_model.")
    job_id: str | None = Field(None, description="The job an export came from.")
    created_at: datetime | None = None
    config_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Config fields this model recommends (its basis_defaults.json): a job on it "
                    "gets them for the fields its `config` leaves out, over the generic defaults "
                    "of GET /v1/components. {} = none (or an unusable file: creating a job says why).")


ModelsPublic = ListPublic[ModelPublic]


class ModelExport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=255, description="Model name (`org/name` or `name`); "
                             "default `ft/<job short id>-step<N>`. 409 if taken.")
    merge_lora: bool = Field(True, description="LoRA checkpoints: merge the adapter into the base "
                             "(a full model), or false to save the adapter with its base recorded.")


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
    fine_tuned_model: str | None = Field(
        None, description="The model exported from the final checkpoint when the job succeeded "
        "(null until then, when config.export_model is false, when the export failed, or after "
        "the model was deleted: see events, `export_failed` / `model_deleted`).")
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


class ModelPullCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo_id: str = Field(max_length=300, description="Hugging Face hub repo `ORG/NAME` (or "
                         "`ORG/NAME@REVISION`) on the server's HF_ENDPOINT.")
    revision: str | None = Field(None, max_length=200, description="Branch, tag or commit; default "
                                 "the repo's main branch. Pinned: the pull records the commit it resolved to.")
    name: str | None = Field(None, max_length=255, description="The model's name in GET /v1/models; "
                             "default the repo id. 409 if taken.")


class ModelPullPublic(BaseModel):
    """A pull started by `POST /v1/models`: poll `GET /v1/model-pulls/{id}` until it ends."""

    id: str
    object: Literal["model.pull"] = "model.pull"
    status: Literal["downloading", "succeeded", "failed"]
    name: str = Field(description="The model's name once pulled.")
    repo_id: str
    revision: str | None = Field(description="The revision asked for (null: the main branch).")
    commit: str = Field(description="The commit it resolved to; every file is fetched at it.")
    files: list[str] = Field(description="The files pulled (safetensors weights, configs, tokenizer).")
    bytes_total: int
    bytes_done: int = Field(description="Bytes on the server's disk so far.")
    error: ErrorDetail | None = Field(None, description="Why a failed pull failed (nothing was kept).")
    model: ModelPublic | None = Field(None, description="The model as GET /v1/models shows it, once "
                                      "succeeded (its `revision` is `commit`).")
    created_at: datetime
    finished_at: datetime | None = None


ModelPullsPublic = ListPublic[ModelPullPublic]


class EvalCreate(EvalOptions):
    """`POST /v1/evals`: a model, a dataset, and how to sample and score it (`EvalOptions`)."""

    model: str = Field(max_length=300, description="A model name from GET /v1/models.")
    dataset_id: str = Field(max_length=64, description="A dataset id from POST /v1/datasets.")
    queue: str | None = Field(None, max_length=64,
                              description="Worker queue (GPU pool); default BASIS_WORKER_QUEUE.")


class EvalResults(BaseModel):
    rows: int = Field(description="Dataset rows evaluated so far (all of them once succeeded).")
    samples_per_prompt: int
    samples: int = Field(description="rows x samples_per_prompt")
    accuracy: float | None = Field(description="Fraction of samples with reward >= 1 (unscorable "
                                   "counts as wrong).")
    mean_reward: float | None = Field(description="Mean reward over all samples, unscorable = 0.")
    pass_at_k: dict[str, float | None] = Field(
        description="k -> unbiased pass@k (Chen et al. 2021), for k = 1, powers of two, and n.")
    mean_response_tokens: float | None
    unscorable_frac: float | None = Field(description="Share of samples the reward could not score.")


class EvalPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    object: Literal["eval"] = "eval"
    status: str
    model: str
    dataset_id: str | None
    config: dict[str, Any] = Field(description="The evaluation's options, defaults filled in.")
    error: str | None
    queue: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    current_step: int = Field(description="Batches of `batch_rows` rows evaluated so far.")
    max_steps: int | None = Field(description="Batches in all.")
    results: EvalResults | None = Field(
        None, description="What it measured over the rows done so far; null before the first batch.")


EvalsPublic = ListPublic[EvalPublic]


class EvalSamplePublic(BaseModel):
    id: int = Field(description="Increasing; pass the last one seen as `after` for the next page.")
    object: Literal["eval_sample"] = "eval_sample"
    eval_id: str
    row: int = Field(description="Position of the prompt among the evaluated rows (from 0).")
    sample: int = Field(description="Which of the row's samples_per_prompt completions.")
    prompt_id: str
    prompt: str
    completion: str
    answer: str = Field(description="The dataset's expected answer.")
    reward: float | None = Field(description="null where the reward could not score the completion.")
    finish_reason: str = Field(description="'stop' (end of sequence) or 'length' (max_new_tokens).")


EvalSamplesPublic = ListPublic[EvalSamplePublic]
