"""Benchmark: `GET /v1/jobs/{id}/advantages?max_steps=` on a long job, through real HTTP.

    python -m benchmarks.api_advantages [--database-url URL] [--steps 20000] [--max-steps 500] [--repeat 20]

Like `benchmarks.api`: the API runs under uvicorn in its own process against a fresh schema of the
PostgreSQL database (dropped afterwards); the job has one 20-bin `advantage` histogram per step.
Times the downsampled read (one request covering the whole run) and, for reference, reading every
histogram through the pages (`limit=1000`), which is what the dashboard did before `max_steps`.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
import numpy as np
from sqlalchemy import insert, text

from benchmarks.api import DEFAULT_URL, seeded_api
from core.db import session_scope
from core.models import AdvantageHistogram, Job
from core.services.keys import create_key

EDGES = [round(-1 + 0.1 * i, 6) for i in range(21)]


def _seed(engine, steps: int) -> tuple[str, str]:
    with session_scope(engine) as session:
        key, secret = create_key(session, "bench")
        job = Job(owner_id=key.user_id, model="bench", estimator="basis", config={}, queue="gpu")
        session.add(job)
        session.flush()
        counts = np.random.default_rng(0).integers(0, 50, size=(steps, len(EDGES) - 1))
        session.execute(insert(AdvantageHistogram), [
            {"job_id": job.id, "step": s, "name": "advantage", "edges": EDGES, "counts": row.tolist()}
            for s, row in enumerate(counts)])
        job_id = job.id
    with engine.begin() as conn:
        conn.execute(text("ANALYZE advantage_histograms"))
    return job_id, secret


def _ms(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def _time_downsampled(client: httpx.Client, path: str, max_steps: int, repeat: int) -> dict:
    client.get(path, params={"max_steps": max_steps}).raise_for_status()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path, params={"max_steps": max_steps})
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    data = response.json()["data"]
    return {"params": {"max_steps": max_steps}, "histograms_returned": len(data), "bytes": len(response.content),
            "first_step": data[0]["step_from"], "last_step": data[-1]["step_to"], "repeat": repeat, **_ms(times)}


def _time_paged(client: httpx.Client, path: str, repeat: int) -> dict:
    times, requests, rows = [], 0, 0
    for _ in range(repeat):
        start, since, requests, rows = time.perf_counter(), None, 0, 0
        while True:
            params = {"limit": 1000, **({"since_step": since} if since is not None else {})}
            body = client.get(path, params=params).raise_for_status().json()
            requests, rows = requests + 1, rows + len(body["data"])
            if not body["has_more"]:
                break
            since = body["next_cursor"]
        times.append(time.perf_counter() - start)
    return {"params": "every page, limit=1000", "requests": requests, "histograms_returned": rows,
            "repeat": repeat, **_ms(times)}


def run(database_url: str, steps: int, max_steps: int, repeat: int) -> dict:
    with seeded_api(database_url, lambda engine: _seed(engine, steps), 120) as (client, job_id):
        path = f"/v1/jobs/{job_id}/advantages"
        results = [_time_downsampled(client, path, max_steps, repeat),
                   _time_paged(client, path, max(repeat // 10, 1))]
    return {"bench": "api_advantages_latency", "backend": "postgresql", "steps": steps,
            "bins": len(EDGES) - 1, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--steps", type=int, default=20_000, help="histograms (steps) in the job")
    parser.add_argument("--max-steps", type=int, default=500, help="the downsampled read's max_steps")
    parser.add_argument("--repeat", type=int, default=20, help="downsampled requests timed")
    args = parser.parse_args()
    print(json.dumps(run(args.database_url, args.steps, args.max_steps, args.repeat)))


if __name__ == "__main__":
    main()
