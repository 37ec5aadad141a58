"""A small typed client for the BASIS REST API (`/v1`), used by the dashboard.

Choices:
- Payloads come back as the API's own JSON (TypedDicts below describe them) rather than objects:
  they pickle cheaply into `st.cache_data` and the chart builders in `charts.py` read them directly.
- Every failure is one of four exceptions a page can turn into a clear state: `ApiUnreachable`
  (connection refused, DNS, timeout), `Unauthorized` (missing or wrong key), `NotFound`, and
  `ApiError` for the rest, carrying the API's `code`, `message` and `param` (the field at fault).
- The transport is injectable (`transport=httpx.MockTransport(...)` or an ASGI transport) so the
  client can be exercised without a network; the dashboard itself always talks HTTP.
- List endpoints are paged with the API's cursors; `iter_*` helpers follow them so callers never
  see a truncated list by accident.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, NotRequired, TypedDict

import httpx

DEFAULT_TIMEOUT = 15.0


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


class Job(TypedDict):
    id: str
    object: str
    status: str
    model: str
    dataset_id: str | None
    estimator: str
    config: dict[str, Any]
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    current_step: int
    max_steps: int | None
    latest_metrics: dict[str, float | None]


class MetricSeries(TypedDict):
    name: str
    steps: list[int]
    values: list[float | None]


class Histogram(TypedDict):
    step: int  # the last step it covers
    name: str
    edges: list[float]
    counts: list[int]
    step_from: NotRequired[int]  # first step merged into it (downsampled reads; = step otherwise)
    step_to: NotRequired[int]


class Event(TypedDict):
    id: int
    kind: str
    message: str
    level: NotRequired[str]
    ts: NotRequired[str]
    created_at: NotRequired[str]
    data: NotRequired[dict[str, Any] | None]


class Checkpoint(TypedDict):
    id: str
    step: int
    bytes: NotRequired[int]
    created_at: NotRequired[str]


class Dataset(TypedDict):
    id: str
    name: str
    rows: NotRequired[int]
    bytes: NotRequired[int]
    created_at: NotRequired[str]


class Model(TypedDict):
    id: str


def _error_from_response(response: httpx.Response) -> ApiError:
    """The exception for a non-2xx answer, using the API's `{"error": {...}}` body when present."""
    code = message = param = None
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, message, param = error.get("code"), error.get("message"), error.get("param")
        elif isinstance(body, dict) and "detail" in body:  # a bare FastAPI error
            message = str(body["detail"])
    except ValueError:
        pass
    message = message or f"HTTP {response.status_code}: {response.text[:200] or response.reason_phrase}"
    kind = {401: Unauthorized, 403: Unauthorized, 404: NotFound}.get(response.status_code, ApiError)
    return kind(message, status=response.status_code, code=code, param=param)


class BasisClient:
    """Client for one API base URL and key. Use as a context manager or call `close()`."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  transport=transport)

    def __enter__(self) -> BasisClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnreachable(f"the API at {self.base_url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base_url} ({exc})") from exc
        if response.status_code >= 400:
            raise _error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"the API at {self.base_url} sent something that is not JSON",
                           status=response.status_code) from exc

    @staticmethod
    def _params(**params: Any) -> dict[str, Any]:
        return {key: value for key, value in params.items() if value is not None}

    # -- resources ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /v1/health` (no key needed)."""
        return self._json("GET", "/v1/health")

    def list_jobs(self, *, status: str | None = None, limit: int = 100,
                  after: str | None = None) -> dict[str, Any]:
        """One page of jobs, newest first: `{"data": [Job], "has_more", "next_cursor"}`."""
        return self._json("GET", "/v1/jobs", params=self._params(status=status, limit=limit, after=after))

    def iter_jobs(self, *, status: str | None = None, page_size: int = 100,
                  max_items: int | None = None) -> Iterator[Job]:
        """Every job (newest first), following cursors, at most `max_items`."""
        after, seen = None, 0
        while True:
            page = self.list_jobs(status=status, limit=page_size, after=after)
            for job in page["data"]:
                yield job
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            if not page.get("has_more") or not page.get("next_cursor"):
                return
            after = page["next_cursor"]

    def get_job(self, job_id: str) -> Job:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> Job:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def retry_job(self, job_id: str) -> Job:
        """`POST /v1/jobs/{id}/retry`: a failed or cancelled job back to `queued`; the worker resumes
        it from its newest checkpoint. Any other status raises `ApiError` (409)."""
        return self._json("POST", f"/v1/jobs/{job_id}/retry")

    def delete_job(self, job_id: str) -> None:
        """`DELETE /v1/jobs/{id}`: a finished job with its events, metrics, checkpoints and run dir.
        A queued or running job raises `ApiError` (409: cancel it first)."""
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def create_job(self, *, dataset_id: str, model: str, config: dict[str, Any]) -> Job:
        """`POST /v1/jobs`; a bad field raises `ApiError` whose `param` names it."""
        return self._json("POST", "/v1/jobs", json={"dataset_id": dataset_id, "model": model,
                                                    "config": config})

    def list_events(self, job_id: str, *, after: int | None = None, limit: int = 100) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}/events",
                          params=self._params(after=after, limit=limit))

    def events(self, job_id: str, *, page_size: int = 100, max_items: int = 1000) -> list[Event]:
        """Events of a job, oldest first (at most `max_items`)."""
        events: list[Event] = []
        after = None
        while len(events) < max_items:
            page = self.list_events(job_id, after=after, limit=page_size)
            events.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                break
            after = page.get("next_cursor") or page["data"][-1]["id"]
        return events[:max_items]

    def metrics(self, job_id: str, *, names: Sequence[str] | None = None,
                since_step: int | None = None, max_points: int | None = None) -> list[MetricSeries]:
        """Metric series of a job; `max_points` asks the API to downsample each series."""
        params = self._params(names=",".join(names) if names else None, since_step=since_step,
                              max_points=max_points)
        return self._json("GET", f"/v1/jobs/{job_id}/metrics", params=params)["data"]

    def advantages(self, job_id: str, *, since_step: int | None = None, max_steps: int | None = None,
                   page_size: int = 1000, max_items: int = 20_000) -> list[Histogram]:
        """Advantage histograms from `since_step` on.

        With `max_steps`, one request: the API merges consecutive steps into at most that many
        histograms per name, covering every step to the latest (`step_from`..`step_to` each).
        Without it, one histogram per step, following the API's pages up to `max_items`."""
        path = f"/v1/jobs/{job_id}/advantages"
        if max_steps is not None:
            return self._json("GET", path, params=self._params(since_step=since_step, max_steps=max_steps))["data"]
        histograms: list[Histogram] = []
        while len(histograms) < max_items:
            page = self._json("GET", path, params=self._params(since_step=since_step, limit=page_size))
            histograms.extend(page["data"])
            if not page.get("has_more") or not page["data"]:
                break
            cursor = page.get("next_cursor")
            since_step = int(cursor) if cursor is not None else page["data"][-1]["step"] + 1
        return histograms[:max_items]

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        return self._json("GET", f"/v1/jobs/{job_id}/checkpoints")["data"]

    def checkpoint_content(self, job_id: str, checkpoint_id: str) -> bytes:
        """The checkpoint as a .tar archive (read whole: the dashboard hands it to the browser)."""
        return self._request("GET", f"/v1/jobs/{job_id}/checkpoints/{checkpoint_id}/content").content

    def checkpoint_url(self, job_id: str, checkpoint_id: str) -> str:
        """Direct URL of a checkpoint archive (needs the key as a Bearer header)."""
        return f"{self.base_url}/v1/jobs/{job_id}/checkpoints/{checkpoint_id}/content"

    def datasets(self, *, max_items: int = 1000) -> list[Dataset]:
        """Datasets, newest first, following cursors."""
        result: list[Dataset] = []
        after = None
        while len(result) < max_items:
            page = self._json("GET", "/v1/datasets", params=self._params(limit=100, after=after))
            result.extend(page["data"])
            if not page.get("has_more") or not page.get("next_cursor"):
                break
            after = page["next_cursor"]
        return result[:max_items]

    def upload_dataset(self, file: bytes | BinaryIO, filename: str, *, name: str | None = None) -> Dataset:
        """`POST /v1/datasets` (multipart); a bad line raises `ApiError` naming it."""
        data = {"name": name} if name else None
        return self._json("POST", "/v1/datasets", data=data,
                          files={"file": (filename, file, "application/jsonl")})

    def models(self) -> list[Model]:
        return self._json("GET", "/v1/models")["data"]

    def components(self) -> dict[str, list[dict[str, Any]]]:
        """Estimators, rewards and engines a job may name, with their options' JSON Schema."""
        return self._json("GET", "/v1/components")
