"""Benchmark: `GET /v1/jobs/{id}/metrics` latency on a job with 100,000 points, through real HTTP.

    python -m benchmarks.api [--database-url URL] [--steps 100000] [--names 1] [--repeat 50]

Starts the API under uvicorn (its own process, so client and server do not share a GIL) on a free
local port against a fresh schema of the PostgreSQL database
(default `BASIS_TEST_POSTGRES_URL` or postgresql+psycopg://postgres@127.0.0.1:5432/test; the schema
is dropped afterwards), writes `names` series of `steps // names` points each, and times the request
without downsampling and with `max_points=500`. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import numpy as np
from sqlalchemy import Engine, insert, text

from benchmarks.fresh_db import fresh_postgres_schema
from core.db import make_engine, session_scope
from core.models import Job, Metric
from core.services.keys import create_key

DEFAULT_URL = os.environ.get("BASIS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _seed(engine, steps: int, names: int) -> tuple[str, str]:
    """A user, a key and a job holding `steps` metric points spread over `names` series."""
    with session_scope(engine) as session:
        key, secret = create_key(session, "bench")
        job = Job(owner_id=key.user_id, model="bench", estimator="basis", config={}, queue="gpu")
        session.add(job)
        session.flush()
        rng = np.random.default_rng(0)
        per_name = steps // names
        for n in range(names):
            values = rng.random(per_name)
            session.execute(insert(Metric), [{"job_id": job.id, "name": f"metric/{n:02d}", "step": s,
                                              "value": float(v)} for s, v in enumerate(values)])
        job_id = job.id
    with engine.begin() as conn:
        conn.execute(text("ANALYZE metrics"))
    return job_id, secret


@contextmanager
def api_server(database_url: str) -> Iterator[str]:
    """The API under uvicorn on a free local port, in its own process (client and server do not
    share a GIL), against `database_url`; yields its base URL once it answers /v1/health."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BASIS_DATABASE_URL": database_url, "BASIS_DATA_DIR": tmp}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port),
                                   "--log-level", "warning"], env=env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base_url}/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not become healthy")
                time.sleep(0.2)
            yield base_url
        finally:
            server.terminate()
            server.wait(timeout=30)


def _time(client: httpx.Client, url: str, params: dict, repeat: int) -> dict:
    client.get(url, params=params).raise_for_status()  # warm-up
    times, size, points = [], 0, 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, params=params)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        size = len(response.content)
    body = response.json()
    points = sum(len(s["steps"]) for s in body["data"]) if "data" in body else 0
    ms = np.array(times)
    return {"params": params, "points_returned": points, "bytes": size, "repeat": repeat,
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


@contextmanager
def seeded_api(database_url: str, seed: Callable[[Engine], tuple[str, str]],
               timeout: float) -> Iterator[tuple[httpx.Client, str]]:
    """(client, job id): the API on a fresh schema that `seed(engine) -> (job id, API key)` filled."""
    with fresh_postgres_schema(database_url, "bench") as url:
        engine = make_engine(url)
        job_id, secret = seed(engine)
        engine.dispose()
        headers = {"Authorization": f"Bearer {secret}"}
        with api_server(url) as base_url, httpx.Client(base_url=base_url, headers=headers,
                                                       timeout=timeout) as client:
            yield client, job_id


def run(database_url: str, steps: int, names: int, repeat: int) -> dict:
    with seeded_api(database_url, lambda engine: _seed(engine, steps, names), 60) as (client, job_id):
        path = f"/v1/jobs/{job_id}/metrics"
        results = [_time(client, path, {}, repeat),
                   _time(client, path, {"max_points": 500}, repeat * 4),
                   {**_time(client, f"/v1/jobs/{job_id}", {}, repeat * 4),
                    "params": "baseline: GET /v1/jobs/{id}"}]
    return {"bench": "api_metrics_latency", "backend": "postgresql", "points": steps,
            "series": names, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--steps", type=int, default=100_000, help="total points in the job")
    parser.add_argument("--names", type=int, default=1, help="number of series they are spread over")
    parser.add_argument("--repeat", type=int, default=50, help="requests timed without downsampling")
    args = parser.parse_args()
    print(json.dumps(run(args.database_url, args.steps, args.names, args.repeat)))


if __name__ == "__main__":
    main()
