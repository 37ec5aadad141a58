"""The typed client of the BASIS REST API (`/v1`): one per base URL and key.

Choices:
- Answers are the generated models of client/models.py (from the API's OpenAPI schema), validated
  on arrival: a field the API renamed fails here, loudly, not three pages later in a chart.
- `ROUTES` maps every (method, path) the client calls to the model it reads; the contract test
  checks it against the API's schema both ways (every route covered, same response schema).
- Every failure is an `ApiError`, carrying the API's `{"error": {code, message, param}}`;
  subclasses say what a caller can do about it: `ApiUnreachable` (no HTTP answer), `Unauthorized`
  (401/403: the key), `NotFound` (404).
- The transport is injectable: `transport=` (an httpx transport) or `http=` (a whole
  `httpx.Client`, e.g. FastAPI's TestClient over an in-process app), so tests need no server.
- List endpoints are paged with the API's cursors; `iter_*` and the plural helpers follow them, so
  callers never see a truncated list by accident.
- Synchronous: the CLI, the dashboard and the demo each make one request at a time per thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from client.models import (
    CheckpointPublic,
    ComponentsPublic,
    DatasetPublic,
    EvalPublic,
    EvalSamplePublic,
    EventPublic,
    Health,
    HistogramPublic,
    JobPublic,
    LogLinePublic,
    MetricSeries,
    ModelPublic,
    ModelPullPublic,
    Page,
    Readiness,
    SamplePublic,
    WorkerPublic,
)

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 15.0
# Reading a hub dataset can take minutes (the API answers once every row is stored): a client made
# for `import_dataset` should use at least this.
IMPORT_TIMEOUT = 600.0
# Exporting a LoRA checkpoint merges it into its base inside the request: loading, merging and
# writing a large model takes minutes, so `export_checkpoint` waits this long whatever the client's
# own (shorter) timeout.
EXPORT_TIMEOUT = 1800.0
T = TypeVar("T")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Route(Generic[M]):
    """One API route and the model of its 2xx body (None: no JSON body, a 204 or a file)."""

    method: str
    path: str
    model: type[M] | None


HEALTH = Route("GET", "/v1/health", Health)
READY = Route("GET", "/v1/health/ready", Readiness)
UPLOAD_DATASET = Route("POST", "/v1/datasets", DatasetPublic)
IMPORT_DATASET = Route("POST", "/v1/datasets/import", DatasetPublic)
LIST_DATASETS = Route("GET", "/v1/datasets", Page[DatasetPublic])
GET_DATASET = Route("GET", "/v1/datasets/{dataset_id}", DatasetPublic)
DELETE_DATASET: Route[BaseModel] = Route("DELETE", "/v1/datasets/{dataset_id}", None)
DATASET_ROWS = Route("GET", "/v1/datasets/{dataset_id}/rows", Page[dict[str, Any]])
MODELS = Route("GET", "/v1/models", Page[ModelPublic])
GET_MODEL = Route("GET", "/v1/models/{name}", ModelPublic)
DELETE_MODEL: Route[BaseModel] = Route("DELETE", "/v1/models/{name}", None)
PULL_MODEL = Route("POST", "/v1/models", ModelPullPublic)
LIST_MODEL_PULLS = Route("GET", "/v1/model-pulls", Page[ModelPullPublic])
GET_MODEL_PULL = Route("GET", "/v1/model-pulls/{pull_id}", ModelPullPublic)
COMPONENTS = Route("GET", "/v1/components", ComponentsPublic)
CREATE_JOB = Route("POST", "/v1/jobs", JobPublic)
LIST_JOBS = Route("GET", "/v1/jobs", Page[JobPublic])
GET_JOB = Route("GET", "/v1/jobs/{job_id}", JobPublic)
DELETE_JOB: Route[BaseModel] = Route("DELETE", "/v1/jobs/{job_id}", None)
CANCEL_JOB = Route("POST", "/v1/jobs/{job_id}/cancel", JobPublic)
RETRY_JOB = Route("POST", "/v1/jobs/{job_id}/retry", JobPublic)
EVENTS = Route("GET", "/v1/jobs/{job_id}/events", Page[EventPublic])
METRICS = Route("GET", "/v1/jobs/{job_id}/metrics", Page[MetricSeries])
ADVANTAGES = Route("GET", "/v1/jobs/{job_id}/advantages", Page[HistogramPublic])
CHECKPOINTS = Route("GET", "/v1/jobs/{job_id}/checkpoints", Page[CheckpointPublic])
CHECKPOINT_CONTENT: Route[BaseModel] = Route(
    "GET", "/v1/jobs/{job_id}/checkpoints/{checkpoint_id}/content", None)
EXPORT_CHECKPOINT = Route("POST", "/v1/jobs/{job_id}/checkpoints/{checkpoint_id}/export", ModelPublic)
SAMPLES = Route("GET", "/v1/jobs/{job_id}/samples", Page[SamplePublic])
LOGS = Route("GET", "/v1/jobs/{job_id}/logs", Page[LogLinePublic])
WORKERS = Route("GET", "/v1/workers", Page[WorkerPublic])
CREATE_EVAL = Route("POST", "/v1/evals", EvalPublic)
LIST_EVALS = Route("GET", "/v1/evals", Page[EvalPublic])
GET_EVAL = Route("GET", "/v1/evals/{eval_id}", EvalPublic)
CANCEL_EVAL = Route("POST", "/v1/evals/{eval_id}/cancel", EvalPublic)
EVAL_SAMPLES = Route("GET", "/v1/evals/{eval_id}/samples", Page[EvalSamplePublic])
EVAL_EVENTS = Route("GET", "/v1/evals/{eval_id}/events", Page[EventPublic])
RETRY_EVAL = Route("POST", "/v1/evals/{eval_id}/retry", EvalPublic)
DELETE_EVAL: Route[BaseModel] = Route("DELETE", "/v1/evals/{eval_id}", None)

# (method, path) -> the model of its 2xx body, for every route the client calls.
ROUTES: dict[tuple[str, str], type[BaseModel] | None] = {
    (route.method, route.path): route.model for route in (
        HEALTH, READY, UPLOAD_DATASET, IMPORT_DATASET, LIST_DATASETS, GET_DATASET, DELETE_DATASET, DATASET_ROWS, MODELS,
        GET_MODEL, DELETE_MODEL, PULL_MODEL, LIST_MODEL_PULLS, GET_MODEL_PULL,
        COMPONENTS, CREATE_JOB, LIST_JOBS, GET_JOB, DELETE_JOB, CANCEL_JOB, RETRY_JOB, EVENTS,
        METRICS, ADVANTAGES, CHECKPOINTS, CHECKPOINT_CONTENT, EXPORT_CHECKPOINT, SAMPLES, LOGS, WORKERS,
        CREATE_EVAL, LIST_EVALS, GET_EVAL, CANCEL_EVAL, EVAL_SAMPLES, EVAL_EVENTS,
        RETRY_EVAL, DELETE_EVAL)}


class ApiError(Exception):
    """The API answered with an error (or not at all, see `ApiUnreachable`)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param

    def __str__(self) -> str:
        where = f" ({self.param})" if self.param else ""
        return f"{self.message}{where}"


class ApiUnreachable(ApiError):
    """No HTTP answer: the server is down, the URL is wrong, or the request timed out."""


class Unauthorized(ApiError):
    """HTTP 401/403: the API key is missing, wrong or revoked."""


class NotFound(ApiError):
    """HTTP 404: no such resource (or it belongs to another user)."""


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for a non-2xx answer, using the API's `{"error": {...}}` body when present."""
    code = message = param = None
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, message, param = error.get("code"), error.get("message"), error.get("param")
        elif isinstance(body, dict) and "detail" in body:  # a bare FastAPI/proxy error
            message = str(body["detail"])
    except ValueError:
        pass
    message = message or f"HTTP {response.status_code}: {response.text[:200] or response.reason_phrase}"
    kind = {401: Unauthorized, 403: Unauthorized, 404: NotFound}.get(response.status_code, ApiError)
    return kind(message, status=response.status_code, code=code, param=param)


def follow_pages(fetch: Callable[[str | None], Page[T]], *, max_items: int | None = None) -> Iterator[T]:
    """Items of every page, first to last: `fetch(cursor)` gets one page (cursor None = first)."""
    cursor, seen = None, 0
    while True:
        page = fetch(cursor)
        for item in page.data:
            yield item
            seen += 1
            if max_items is not None and seen >= max_items:
                return
        if not page.has_more or not page.next_cursor or not page.data:
            return
        cursor = page.next_cursor


def env_connection() -> tuple[str, str | None]:
    """(API URL, key) from `BASIS_API_URL` and `BASIS_API_KEY`, the variables core/settings.py
    documents for the CLI and the dashboard (read here so clients need no server package)."""
    return os.environ.get("BASIS_API_URL") or DEFAULT_URL, os.environ.get("BASIS_API_KEY") or None


def _params(**params: Any) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


class BasisClient:
    """Client for one API base URL and key. Use as a context manager or call `close()`."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None,
                 http: httpx.Client | None = None):
        self._own_http = http is None
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                          transport=transport)
        self.base_url = str(self._http.base_url).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __enter__(self) -> BasisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _at_least(self, seconds: float) -> httpx.Timeout:
        """The client's timeout with its read and write waits raised to `seconds` (None stays)."""
        own = self._http.timeout
        longer = [None if t is None else max(t, seconds) for t in (own.read, own.write)]
        return httpx.Timeout(connect=own.connect, read=longer[0], write=longer[1], pool=own.pool)

    def _request(self, route: Route[Any], path: dict[str, Any] | None = None,
                 **kwargs: Any) -> httpx.Response:
        if ROUTES.get((route.method, route.path), False) is not route.model:
            raise KeyError(f"{route.method} {route.path} is not in client.rest.ROUTES")
        url = route.path.format(**{k: quote(str(v), safe="") for k, v in (path or {}).items()})
        try:
            response = self._http.request(route.method, url, headers=self._headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnreachable(f"the API at {self.base_url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base_url} ({exc})") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _call(self, route: Route[M], path: dict[str, Any] | None = None, **kwargs: Any) -> M:
        """The answer of `route`, validated as its model."""
        response = self._request(route, path, **kwargs)
        model = route.model
        if model is None:
            raise TypeError(f"{route.method} {route.path} has no JSON body; use _request")
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiError(f"the API at {self.base_url} sent an unexpected {route.method} {route.path} "
                           f"body ({exc.error_count()} error(s): {exc.errors()[0]['loc']} "
                           f"{exc.errors()[0]['msg']})", status=response.status_code) from exc

    # -- health, catalog ------------------------------------------------------------------------

    def health(self) -> Health:
        """`GET /v1/health` (no key needed)."""
        return self._call(HEALTH)

    def ready(self) -> Readiness:
        """`GET /v1/health/ready` (no key needed): every check; ApiError (503) when one fails."""
        return self._call(READY)

    def models(self) -> list[ModelPublic]:
        """Every model you may use: shared ones and your own exports."""
        return self._call(MODELS).data

    def get_model(self, name: str) -> ModelPublic:
        """One model by name (`org/name` works; NotFound for another user's export)."""
        return self._call(GET_MODEL, {"name": name})

    def delete_model(self, name: str) -> None:
        """Delete your exported model (an admin: a shared one) with its files."""
        self._request(DELETE_MODEL, {"name": name})

    def pull_model(self, repo_id: str, *, revision: str | None = None,
                   name: str | None = None) -> ModelPullPublic:
        """`POST /v1/models` (admins): start pulling `repo_id` (`ORG/NAME[@REV]`) from the server's
        hub. A bad revision, a repo without safetensors or over the size limit raises `ApiError`
        here; the download itself runs on the server: poll `model_pull(id)` for its progress."""
        body = _params(repo_id=repo_id, revision=revision, name=name)
        return self._call(PULL_MODEL, json=body)

    def model_pull(self, pull_id: str) -> ModelPullPublic:
        """`GET /v1/model-pulls/{id}`: status, bytes done of bytes total, the error of a failed pull."""
        return self._call(GET_MODEL_PULL, {"pull_id": pull_id})

    def model_pulls(self) -> list[ModelPullPublic]:
        """Running and recently finished pulls of the API process, newest first (admins)."""
        return self._call(LIST_MODEL_PULLS).data

    def components(self) -> ComponentsPublic:
        """Estimators, rewards and engines a job may name, with their options' JSON Schema."""
        return self._call(COMPONENTS)

    def workers(self, *, include_dead: bool = False, page_size: int = 100) -> list[WorkerPublic]:
        """Workers (live ones unless `include_dead`) with their queues, engines, GPUs and process
        slots: what a job may ask for."""
        return list(follow_pages(lambda after: self._call(
            WORKERS, params=_params(include_dead=include_dead, limit=page_size, after=after))))

    # -- datasets -------------------------------------------------------------------------------

    def list_datasets(self, *, limit: int = 100, after: str | None = None) -> Page[DatasetPublic]:
        return self._call(LIST_DATASETS, params=_params(limit=limit, after=after))

    def datasets(self, *, page_size: int = 100, max_items: int | None = 1000) -> list[DatasetPublic]:
        """Datasets, newest first, following cursors (at most `max_items`)."""
        return list(follow_pages(lambda after: self.list_datasets(limit=page_size, after=after),
                                 max_items=max_items))

    def get_dataset(self, dataset_id: str) -> DatasetPublic:
        return self._call(GET_DATASET, {"dataset_id": dataset_id})

    def dataset_rows(self, dataset_id: str, *, offset: int = 0,
                     limit: int | None = None) -> Page[dict[str, Any]]:
        return self._call(DATASET_ROWS, {"dataset_id": dataset_id},
                          params=_params(offset=offset, limit=limit))

    def upload_dataset(self, file: bytes | BinaryIO, filename: str, *,
                       name: str | None = None) -> DatasetPublic:
        """`POST /v1/datasets` (multipart); a bad line raises `ApiError` naming it."""
        data = {"name": name} if name else None
        return self._call(UPLOAD_DATASET, data=data,
                          files={"file": (filename, file, "application/jsonl")})

    def import_dataset(self, *, answer_field: str, file: bytes | BinaryIO | None = None,
                       filename: str | None = None, hub_id: str | None = None,
                       config: str | None = None, split: str | None = None,
                       revision: str | None = None, file_format: str | None = None,
                       prompt_field: str | None = None, prompt_template: str | None = None,
                       system_prompt: str | None = None, answer_preset: str | None = None,
                       id_field: str | None = None, keep_fields: Sequence[str] | None = None,
                       max_rows: int | None = None, name: str | None = None) -> DatasetPublic:
        """`POST /v1/datasets/import`: rows of a local parquet/JSON/JSONL/CSV `file` (sent with the
        request as `filename`) or of the hub dataset `hub_id` (`config`, `split`, `revision`),
        mapped by `prompt_field` or `prompt_template` ({field} placeholders), `answer_field` with
        `answer_preset` (plain, gsm8k, boxed), optional `system_prompt`, `id_field` and
        `keep_fields`. A bad row raises `ApiError` whose `param` names the row and field."""
        form = _params(hub_id=hub_id, config=config, split=split, revision=revision,
                       format=file_format, prompt_field=prompt_field,
                       prompt_template=prompt_template, system_prompt=system_prompt,
                       answer_field=answer_field, answer_preset=answer_preset, id_field=id_field,
                       keep_fields=",".join(keep_fields) if keep_fields else None,
                       max_rows=max_rows, name=name)
        files = None if file is None else {
            "file": (filename or "dataset", file, "application/octet-stream")}
        return self._call(IMPORT_DATASET, data=form, files=files)

    def delete_dataset(self, dataset_id: str) -> None:
        self._request(DELETE_DATASET, {"dataset_id": dataset_id})

    # -- jobs -----------------------------------------------------------------------------------

    def list_jobs(self, *, status: str | None = None, limit: int = 100,
                  after: str | None = None) -> Page[JobPublic]:
        """One page of jobs, newest first."""
        return self._call(LIST_JOBS, params=_params(status=status, limit=limit, after=after))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100,
                  max_items: int | None = None) -> Iterator[JobPublic]:
        """Every job (newest first), following cursors, at most `max_items`."""
        return follow_pages(lambda after: self.list_jobs(status=status, limit=page_size, after=after),
                            max_items=max_items)

    def get_job(self, job_id: str) -> JobPublic:
        return self._call(GET_JOB, {"job_id": job_id})

    def create_job(self, *, dataset_id: str, model: str, config: dict[str, Any],
                   queue: str | None = None) -> JobPublic:
        """`POST /v1/jobs`; a bad field raises `ApiError` whose `param` names it."""
        body: dict[str, Any] = {"dataset_id": dataset_id, "model": model, "config": config}
        if queue:
            body["queue"] = queue
        return self._call(CREATE_JOB, json=body)

    def cancel_job(self, job_id: str) -> JobPublic:
        return self._call(CANCEL_JOB, {"job_id": job_id})

    def retry_job(self, job_id: str, *, start_over: bool = False) -> JobPublic:
        """`POST /v1/jobs/{id}/retry`: a failed or cancelled job back to `queued`; the worker resumes
        it from its newest checkpoint. Any other status, or a newest checkpoint whose files are gone,
        raises `ApiError` (409); `start_over` clears the job's metrics and trains from step 0."""
        params = {"start_over": "true"} if start_over else None
        return self._call(RETRY_JOB, {"job_id": job_id}, params=params)

    def delete_job(self, job_id: str) -> None:
        """`DELETE /v1/jobs/{id}`: a finished job with its events, metrics, checkpoints and run dir.
        A queued or running job raises `ApiError` (409: cancel it first)."""
        self._request(DELETE_JOB, {"job_id": job_id})

    # -- a job's outputs ------------------------------------------------------------------------

    def list_events(self, job_id: str, *, after: int | None = None,
                    limit: int = 100) -> Page[EventPublic]:
        """Events with id > `after`, oldest first; `next_cursor` is the next `after`."""
        return self._call(EVENTS, {"job_id": job_id},
                          params=_params(after=after, limit=limit))

    def iter_events(self, job_id: str, *, after: int | None = None, page_size: int = 100,
                    max_items: int | None = None) -> Iterator[EventPublic]:
        """Events after `after`, oldest first, following cursors."""
        return follow_pages(
            lambda cursor: self.list_events(job_id, after=after if cursor is None else int(cursor),
                                            limit=page_size), max_items=max_items)

    def events(self, job_id: str, *, page_size: int = 100, max_items: int = 1000) -> list[EventPublic]:
        """Events of a job, oldest first (at most `max_items`)."""
        return list(self.iter_events(job_id, page_size=page_size, max_items=max_items))

    def list_samples(self, job_id: str, *, step: int | None = None, after: int | None = None,
                     limit: int = 100) -> Page[SamplePublic]:
        """Rollout samples (of one `step` if given) with id > `after`, oldest first."""
        return self._call(SAMPLES, {"job_id": job_id},
                          params=_params(step=step, after=after, limit=limit))

    def samples(self, job_id: str, *, step: int | None = None,
                max_items: int = 1000) -> list[SamplePublic]:
        """Rollout samples of a job (of one `step`), oldest first, following cursors."""
        return list(follow_pages(
            lambda cursor: self.list_samples(job_id, step=step,
                                             after=None if cursor is None else int(cursor)),
            max_items=max_items))

    def logs(self, job_id: str, *, after: int | None = None, limit: int = 200) -> Page[LogLinePublic]:
        """Log lines with id > `after`, oldest first; poll with the last id seen to follow."""
        return self._call(LOGS, {"job_id": job_id}, params=_params(after=after, limit=limit))

    def metrics(self, job_id: str, *, names: Sequence[str] | None = None,
                since_step: int | None = None, max_points: int | None = None) -> list[MetricSeries]:
        """Metric series of a job; `max_points` asks the API to downsample each series."""
        params = _params(names=",".join(names) if names else None, since_step=since_step,
                         max_points=max_points)
        return self._call(METRICS, {"job_id": job_id}, params=params).data

    def advantages(self, job_id: str, *, since_step: int | None = None, max_steps: int | None = None,
                   page_size: int = 1000, max_items: int = 20_000) -> list[HistogramPublic]:
        """Advantage histograms from `since_step` on.

        With `max_steps`, one request: the API merges consecutive steps into at most that many
        histograms per name, covering every step to the latest (`step_from`..`step_to` each).
        Without it, one histogram per step, following the API's pages (`next_cursor` is the next
        `since_step`) up to `max_items`."""
        path = {"job_id": job_id}
        if max_steps is not None:
            return self._call(ADVANTAGES, path,
                              params=_params(since_step=since_step, max_steps=max_steps)).data

        def page(cursor: str | None) -> Page[HistogramPublic]:
            start = since_step if cursor is None else int(cursor)
            return self._call(ADVANTAGES, path, params=_params(since_step=start, limit=page_size))

        return list(follow_pages(page, max_items=max_items))

    def checkpoints(self, job_id: str) -> list[CheckpointPublic]:
        return self._call(CHECKPOINTS, {"job_id": job_id}).data

    def checkpoint_content(self, job_id: str, checkpoint_id: str) -> bytes:
        """The checkpoint as a .tar archive (read whole: the dashboard hands it to the browser)."""
        return self._request(CHECKPOINT_CONTENT,
                             {"job_id": job_id, "checkpoint_id": checkpoint_id}).content

    def export_checkpoint(self, job_id: str, checkpoint_id: str, *, name: str | None = None,
                          merge_lora: bool = True,
                          timeout: float = EXPORT_TIMEOUT) -> ModelPublic:
        """Export a checkpoint as a model of yours (`ft/<job>-step<N>` unless `name`); a LoRA
        checkpoint merged into its base, or with `merge_lora=False` saved as an adapter. Waits up
        to `timeout` seconds for the answer (the merge runs in the request), or the client's own
        timeout where that is longer."""
        return self._call(EXPORT_CHECKPOINT, {"job_id": job_id, "checkpoint_id": checkpoint_id},
                          json=_params(name=name, merge_lora=merge_lora),
                          timeout=self._at_least(timeout))

    def checkpoint_url(self, job_id: str, checkpoint_id: str) -> str:
        """Direct URL of a checkpoint archive (needs the key as a Bearer header)."""
        return f"{self.base_url}/v1/jobs/{job_id}/checkpoints/{checkpoint_id}/content"

    # -- evaluations ----------------------------------------------------------------------------

    def create_eval(self, *, model: str, dataset_id: str, queue: str | None = None,
                    **options: Any) -> EvalPublic:
        """`POST /v1/evals`: evaluate `model` on a dataset; `options` are the evaluation's fields
        (`reward`, `samples_per_prompt`, `temperature`, `max_new_tokens`, `max_rows`, ...). A bad
        field raises `ApiError` whose `param` names it."""
        body: dict[str, Any] = {"model": model, "dataset_id": dataset_id, **options}
        if queue:
            body["queue"] = queue
        return self._call(CREATE_EVAL, json=body)

    def list_evals(self, *, status: str | None = None, limit: int = 100,
                   after: str | None = None) -> Page[EvalPublic]:
        """One page of evaluations, newest first."""
        return self._call(LIST_EVALS, params=_params(status=status, limit=limit, after=after))

    def evals(self, *, status: str | None = None, page_size: int = 100,
              max_items: int | None = 1000) -> list[EvalPublic]:
        """Evaluations, newest first, following cursors (at most `max_items`)."""
        return list(follow_pages(lambda after: self.list_evals(status=status, limit=page_size,
                                                               after=after), max_items=max_items))

    def get_eval(self, eval_id: str) -> EvalPublic:
        """An evaluation with its results so far (`results` is null before its first batch)."""
        return self._call(GET_EVAL, {"eval_id": eval_id})

    def cancel_eval(self, eval_id: str) -> EvalPublic:
        return self._call(CANCEL_EVAL, {"eval_id": eval_id})

    def retry_eval(self, eval_id: str) -> EvalPublic:
        """A failed or cancelled evaluation back to `queued`; it runs again from its first row."""
        return self._call(RETRY_EVAL, {"eval_id": eval_id})

    def delete_eval(self, eval_id: str) -> None:
        """A finished evaluation with its results, samples and events (409 while it runs)."""
        self._request(DELETE_EVAL, {"eval_id": eval_id})

    def list_eval_samples(self, eval_id: str, *, row: int | None = None, after: int | None = None,
                          limit: int = 100) -> Page[EvalSamplePublic]:
        """Per-row completions and rewards (of one `row` if given) with id > `after`."""
        return self._call(EVAL_SAMPLES, {"eval_id": eval_id},
                          params=_params(row=row, after=after, limit=limit))

    def eval_samples(self, eval_id: str, *, row: int | None = None,
                     max_items: int = 1000) -> list[EvalSamplePublic]:
        """Completions of an evaluation (of one `row`), in row order, following cursors."""
        return list(follow_pages(
            lambda cursor: self.list_eval_samples(eval_id, row=row,
                                                  after=None if cursor is None else int(cursor)),
            max_items=max_items))

    def eval_events(self, eval_id: str, *, max_items: int = 1000) -> list[EventPublic]:
        """Lifecycle events of an evaluation (status changes, warnings, errors), oldest first."""
        return list(follow_pages(
            lambda cursor: self._call(EVAL_EVENTS, {"eval_id": eval_id},
                                      params=_params(after=cursor, limit=100)),
            max_items=max_items))
