"""Streamlit glue shared by the pages: connection settings, cached API reads, error states.

Choices:
- The API URL is the server's `BASIS_API_URL`, shown read-only: a visitor who could edit it would
  make this server send its key to any address (issue 18). `BASIS_DASHBOARD_URL_EDITABLE=true`
  (an admin's choice, e.g. one dashboard for several APIs) makes it an input again.
- The key a visitor types lives in their `st.session_state` only. A server-side default key
  (`BASIS_API_KEY`) is used when the box is empty and never put into a widget, so it never reaches a
  browser; the sidebar then says that every visitor acts as that key's user.
- All HTTP goes through the shared typed client (`client/`); the cached reads store its answers as
  plain JSON (`model_dump(mode="json")`): they pickle cheaply into `st.cache_data` and the chart
  and table builders read them directly.
- Reads go through `st.cache_data` with a short TTL, keyed by URL *and* key (they are arguments of
  every cached function): two users never share a cached answer, and a live page polling every few
  seconds costs the API one request per TTL, not one per rerun. Errors are never cached.
- One `httpx` connection pool per (URL, key) via `st.cache_resource`.
- Every page funnels API failures through `stop_on_error`, which shows the clear state (unreachable,
  wrong key, not found, other) and stops the script, so pages only code the happy path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import streamlit as st
from pydantic import BaseModel

from client import DEFAULT_URL, ApiError, ApiUnreachable, BasisClient, NotFound, Unauthorized
from core.status import ACTIVE
from dashboard.charts import Chart

T = TypeVar("T")
DEFAULT_API_URL = DEFAULT_URL
TTL_SECONDS = 3  # shorter than the live refresh period, so each refresh sees new steps
TERMINAL_TTL_SECONDS = 60  # a finished job's data no longer changes
MAX_POINTS = 500  # per metric series: about one point per pixel column of a wide chart
# Cumulative x axes (wall-clock, rollouts) are fetched nearly raw: a bucket mean of a cumulative
# series is not a value it ever had. 5,000 is the API's default cap on max_points.
X_MAX_POINTS = 5000
# Advantage histograms per job: the API merges consecutive steps into at most this many, so the
# charts cover the whole run however long it is.
HISTOGRAM_STEPS = 500
REFRESH_SECONDS = 5


def _server_url() -> str:
    return os.environ.get("BASIS_API_URL") or DEFAULT_API_URL


def url_editable() -> bool:
    """Whether visitors may point this dashboard at another API (the admin's choice)."""
    return os.environ.get("BASIS_DASHBOARD_URL_EDITABLE", "").strip().lower() in {"1", "true", "yes"}


def _default_key() -> str:
    """The server-side default key: read here, in the server process, and never sent to a page."""
    return (os.environ.get("BASIS_API_KEY") or "").strip()


def init_connection() -> None:
    """The session's own inputs: the URL (used only where editable) and the key it typed."""
    st.session_state.setdefault("api_url", _server_url())
    st.session_state.setdefault("api_key", "")


def connection() -> tuple[str, str]:
    """(API URL, API key) of this session: the server's URL unless editable, the typed key or
    else the server's default key."""
    init_connection()
    url = st.session_state["api_url"].strip() if url_editable() else _server_url()
    return url, st.session_state["api_key"].strip() or _default_key()


def sidebar() -> None:
    """The connection form in the sidebar: the API (read-only unless the admin allows editing)
    and the visitor's own key."""
    init_connection()
    with st.sidebar:
        st.subheader("API connection")
        if url_editable():
            st.text_input("API URL", key="api_url", help="Default: the BASIS_API_URL env variable.")
        else:
            st.caption(f"API: `{_server_url()}` (set by the server)")
        shared = bool(_default_key())
        st.text_input("API key", key="api_key", type="password",
                      placeholder="empty: this server's default key" if shared else "bk_...",
                      help="Your own key; create one with `basis admin create-key`.")
        if shared and not st.session_state["api_key"].strip():
            st.warning("This dashboard has a default API key: every visitor without a key of their "
                       "own acts as that key's user, with all its jobs and data. Give each person "
                       "their own key and unset BASIS_API_KEY (docs/deployment.md).",
                       icon=":material/group:")


@st.cache_resource(show_spinner=False)
def _client(url: str, key: str) -> BasisClient:
    return BasisClient(url, key or None)


def client() -> BasisClient:
    """The (pooled) client for this session's URL and key."""
    return _client(*connection())


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)`; on an API error show its state and stop the page."""
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        stop_on_error(exc)
        raise  # unreachable: st.stop() raises


def stop_on_error(exc: ApiError) -> None:
    """Render the clear state for `exc` and stop the script."""
    url, _ = connection()
    if isinstance(exc, ApiUnreachable):
        st.error(f"**API unreachable.** {exc.message}. Check the API URL in the sidebar and that "
                 "the API is running (`basis up` or `docker compose up`).", icon=":material/cloud_off:")
    elif isinstance(exc, Unauthorized):
        st.error(f"**Wrong or missing API key** for {url}: {exc.message}. Enter a valid key in "
                 "the sidebar (create one with `basis admin create-key`).", icon=":material/key_off:")
    elif isinstance(exc, NotFound):
        st.warning(f"**Not found.** {exc}", icon=":material/search_off:")
    else:
        st.error(f"**The API refused the request** (HTTP {exc.status}, {exc.code}): {exc}", icon=":material/warning:")
    st.stop()


# -- cached reads: URL and key are arguments so they are part of every cache key ----------------

def _plain(answer: BaseModel | Sequence[BaseModel]) -> Any:
    """A client answer as the API's JSON (what the cache stores and the pages read)."""
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json")
    return [item.model_dump(mode="json") for item in answer]


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_jobs(url: str, key: str, status: str | None = None, max_items: int = 500) -> list[dict]:
    return _plain(list(_client(url, key).iter_jobs(status=status, max_items=max_items)))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_job(url: str, key: str, job_id: str) -> dict:
    return _plain(_client(url, key).get_job(job_id))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_metrics(url: str, key: str, job_id: str, names: tuple[str, ...] | None = None,
                  max_points: int = MAX_POINTS) -> list[dict]:
    return _plain(_client(url, key).metrics(job_id, names=names, max_points=max_points))


@st.cache_data(ttl=TERMINAL_TTL_SECONDS, show_spinner=False)
def fetch_metrics_final(url: str, key: str, job_id: str, names: tuple[str, ...] | None = None,
                        max_points: int = MAX_POINTS) -> list[dict]:
    return _plain(_client(url, key).metrics(job_id, names=names, max_points=max_points))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_advantages(url: str, key: str, job_id: str, max_steps: int = HISTOGRAM_STEPS) -> list[dict]:
    return _plain(_client(url, key).advantages(job_id, max_steps=max_steps))


@st.cache_data(ttl=TERMINAL_TTL_SECONDS, show_spinner=False)
def fetch_advantages_final(url: str, key: str, job_id: str, max_steps: int = HISTOGRAM_STEPS) -> list[dict]:
    return _plain(_client(url, key).advantages(job_id, max_steps=max_steps))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_events(url: str, key: str, job_id: str) -> list[dict]:
    return _plain(_client(url, key).events(job_id))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_samples(url: str, key: str, job_id: str, max_items: int = 2000) -> list[dict]:
    return _plain(_client(url, key).samples(job_id, max_items=max_items))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_checkpoints(url: str, key: str, job_id: str) -> list[dict]:
    return _plain(_client(url, key).checkpoints(job_id))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_evals(url: str, key: str, max_items: int = 500) -> list[dict]:
    return _plain(_client(url, key).evals(max_items=max_items))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fetch_eval_samples(url: str, key: str, eval_id: str, row: int | None = None,
                       max_items: int = 1000) -> list[dict]:
    return _plain(_client(url, key).eval_samples(eval_id, row=row, max_items=max_items))


@st.cache_data(ttl=30, show_spinner=False)
def fetch_datasets(url: str, key: str) -> list[dict]:
    return _plain(_client(url, key).datasets())


@st.cache_data(ttl=30, show_spinner=False)
def fetch_models(url: str, key: str) -> list[dict]:
    return _plain(_client(url, key).models())


@st.cache_data(ttl=300, show_spinner=False)
def fetch_components(url: str, key: str) -> dict[str, Any]:  # lists per kind, and `defaults`
    return _plain(_client(url, key).components())


def job_metrics(job: dict, names: tuple[str, ...] | None = None,
                max_points: int = MAX_POINTS) -> list[dict]:
    """Downsampled metric series of `job`, cached longer once the job is finished."""
    fetch = fetch_metrics if job["status"] in ACTIVE else fetch_metrics_final
    return call(fetch, *connection(), job["id"], names, max_points)


def job_advantages(job: dict) -> list[dict]:
    """Advantage histograms of `job` over its whole run (steps merged by the API), cached longer
    once it is finished."""
    fetch = fetch_advantages if job["status"] in ACTIVE else fetch_advantages_final
    return call(fetch, *connection(), job["id"], HISTOGRAM_STEPS)


def prefetch(job: dict) -> None:
    """Warm the caches of a Job detail render with concurrent requests (one thread each).

    Errors are dropped here (they are never cached): the page's own `call` then repeats the request
    in the script thread and shows the error state.
    """
    url, key = connection()
    active = job["status"] in ACTIVE
    tasks: list[tuple[Callable[..., object], tuple[object, ...]]] = [
        (fetch_metrics if active else fetch_metrics_final, (url, key, job["id"], None, MAX_POINTS)),
        (fetch_advantages if active else fetch_advantages_final,
         (url, key, job["id"], HISTOGRAM_STEPS)),
        (fetch_events, (url, key, job["id"])),
        (fetch_checkpoints, (url, key, job["id"])),
    ]
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(fn, *args) for fn, args in tasks]
        wait(futures)


def clear_caches() -> None:
    """Forget cached reads (after a write: new job, upload, cancel, retry, delete)."""
    for fn in (fetch_jobs, fetch_job, fetch_metrics, fetch_metrics_final, fetch_advantages,
               fetch_advantages_final, fetch_events, fetch_checkpoints, fetch_datasets, fetch_evals,
               fetch_eval_samples):
        fn.clear()


def show(where: Any, chart: Chart, width: str = "stretch") -> None:
    """Draw a `charts.Chart` in `where` (`st`, a column, a container)."""
    where.vega_lite_chart(chart.data, chart.spec, width=width)


def job_label(job: dict) -> str:
    """`job_… · basis · running` for pickers."""
    return f"{job['id']} · {job.get('estimator', '?')} · {job['status']}"

