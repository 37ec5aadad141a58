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


class EvalCreate(BaseModel):
    """`POST /v1/evals`: a model, a dataset, and how to sample and score it (`EvalOptions`)."""

    # reward name (trainer.rewards registry)
    reward: str = "math"
    # reward options
    reward_options: dict[str, Any] = Field(default_factory=dict)
    # seconds per reward item before unscorable
    reward_timeout: float = 10.0
    # reward processes (per-item timeout); 0 = score in-process
    reward_workers: int = 2
    # completions sampled per row (n of pass@k); > 1 needs temperature > 0
    samples_per_prompt: int = 1
    # sampling temperature; 0 = greedy
    temperature: float = 0.0
    # nucleus sampling mass; 1 = off
    top_p: float = 1.0
    # keep the k most likely tokens; 0 = off
    top_k: int = 0
    # response length cap (tokens)
    max_new_tokens: int = 256
    # evaluate the dataset's first N rows; None = every row
    max_rows: int | None = None
    # rows per generation call; each call is one progress step (and cancel point)
    batch_rows: int = 16
    # rollout engine: 'hf' (transformers) or 'vllm'
    engine: str = "hf"
    # options of the chosen engine, checked against it
    engine_options: dict[str, Any] = Field(default_factory=dict)
    # seed of the sampling
    seed: int = 0
    # auto = cuda if available
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # compute dtype: auto = bfloat16 on GPU, float32 on CPU
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # torch CPU threads for this run; None = torch's default
    cpu_threads: int | None = None
    # A model name from GET /v1/models.
    model: str
    # A dataset id from POST /v1/datasets.
    dataset_id: str
    # Worker queue (GPU pool); default BASIS_WORKER_QUEUE.
    queue: str | None = None


class EvalResults(BaseModel):
    # Dataset rows evaluated so far (all of them once succeeded).
    rows: int
    samples_per_prompt: int
    # rows x samples_per_prompt
    samples: int
    # Fraction of samples with reward >= 1 (unscorable counts as wrong).
    accuracy: float | None
    # Mean reward over all samples, unscorable = 0.
    mean_reward: float | None
    # k -> unbiased pass@k (Chen et al. 2021), for k = 1, powers of two, and n.
    pass_at_k: dict[str, float | None]
    mean_response_tokens: float | None
    # Share of samples the reward could not score.
    unscorable_frac: float | None


class EvalPublic(BaseModel):
    id: str
    object: Literal["eval"] = "eval"
    status: str
    model: str
    dataset_id: str | None
    # The evaluation's options, defaults filled in.
    config: dict[str, Any]
    error: str | None
    queue: str
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # Batches of `batch_rows` rows evaluated so far.
    current_step: int
    # Batches in all.
    max_steps: int | None
    # What it measured over the rows done so far; null before the first batch.
    results: EvalResults | None = None


class EvalSamplePublic(BaseModel):
    # Increasing; pass the last one seen as `after` for the next page.
    id: int
    object: Literal["eval_sample"] = "eval_sample"
    eval_id: str
    # Position of the prompt among the evaluated rows (from 0).
    row: int
    # Which of the row's samples_per_prompt completions.
    sample: int
    prompt_id: str
    prompt: str
    completion: str
    # The dataset's expected answer.
    answer: str
    # null where the reward could not score the completion.
    reward: float | None
    # 'stop' (end of sequence) or 'length' (max_new_tokens).
    finish_reason: str


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
    # The model exported from the final checkpoint when the job succeeded (null until then, when config.export_model is false, when the export failed, or after the model was deleted: see events, `export_failed` / `model_deleted`).
    fine_tuned_model: str | None = None
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


class ModelExport(BaseModel):
    # Model name (`org/name` or `name`); default `ft/<job short id>-step<N>`. 409 if taken.
    name: str | None = None
    # LoRA checkpoints: merge the adapter into the base (a full model), or false to save the adapter with its base recorded.
    merge_lora: bool = True


class ModelPublic(BaseModel):
    # The name to pass as `model` when creating a job.
    id: str
    object: Literal["model"] = "model"
    name: str
    # local: a directory copied into the models root by hand; hub: pulled from a model hub; export: exported from a job's checkpoint.
    source: Literal["local", "hub", "export"] = "local"
    # True for your own exports (only you see them).
    owned: bool = False
    # 'you' for your exports, else 'platform' (shared).
    owned_by: str = "platform"
    # The pinned hub commit of a pulled model.
    revision: str | None = None
    # Size of the model directory.
    bytes: int | None = None
    architecture: str | None = None
    # Parameters in the directory's safetensors (an adapter's own).
    parameter_count: int | None = None
    # The tokenizer has a chat template.
    chat_template: bool = False
    # The model an export was trained from (an adapter loads on top of it).
    base_model: str | None = None
    # full: complete weights; adapter: a PEFT LoRA adapter over base_model.
    format: Literal["full", "adapter"] = "full"
    # The job an export came from.
    job_id: str | None = None
    created_at: datetime | None = None
    # Config fields this model recommends (its basis_defaults.json): a job on it gets them for the fields its `config` leaves out, over the generic defaults of GET /v1/components. {} = none (or an unusable file: creating a job says why).
    config_defaults: dict[str, Any] = Field(default_factory=dict)


class ModelPullCreate(BaseModel):
    # Hugging Face hub repo `ORG/NAME` (or `ORG/NAME@REVISION`) on the server's HF_ENDPOINT.
    repo_id: str
    # Branch, tag or commit; default the repo's main branch. Pinned: the pull records the commit it resolved to.
    revision: str | None = None
    # The model's name in GET /v1/models; default the repo id. 409 if taken.
    name: str | None = None


class ModelPullPublic(BaseModel):
    """A pull started by `POST /v1/models`: poll `GET /v1/model-pulls/{id}` until it ends."""

    id: str
    object: Literal["model.pull"] = "model.pull"
    status: Literal["downloading", "succeeded", "failed"]
    # The model's name once pulled.
    name: str
    repo_id: str
    # The revision asked for (null: the main branch).
    revision: str | None
    # The commit it resolved to; every file is fetched at it.
    commit: str
    # The files pulled (safetensors weights, configs, tokenizer).
    files: list[str]
    bytes_total: int
    # Bytes on the server's disk so far.
    bytes_done: int
    # Why a failed pull failed (nothing was kept).
    error: ErrorDetail | None = None
    # The model as GET /v1/models shows it, once succeeded (its `revision` is `commit`).
    model: ModelPublic | None = None
    created_at: datetime
    finished_at: datetime | None = None


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
