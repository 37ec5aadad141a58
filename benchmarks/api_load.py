"""Load benchmark of the API: N concurrent clients against a real uvicorn, health probed throughout.

    python -m benchmarks.api_load --clients 200 --seconds 20            # embedded stack (SQLite)
    python -m benchmarks.api_load --clients 1000 --database-url postgresql+psycopg://...
    python -m benchmarks.api_load --smoke                              # 40 clients, 3 s (tests)

The API runs as `uvicorn api.main:app` in a child process on a fresh data dir (or the given
database, migrated), with one user, one dataset and a few jobs carrying metrics. Each client loops
`GET /v1/jobs` and `GET /v1/jobs/{id}/metrics` with a 20 s timeout until the time is up; a prober in
its own process calls `/v1/health` every 0.25 s. Printed as JSON: requests, p50/p99 latency of all answers,
counts per status (200, 429/503 = shed load, 5xx), timeouts and connection errors, and the
health probe's worst latency and failures. Every request must be answered: a 200 or a fast
429/503 with Retry-After (issue 18).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.fresh_db import fresh_postgres_schema

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seed(database_url: str, data_dir: Path, jobs: int = 5) -> tuple[str, list[str]]:
    """A user with a key, a dataset and `jobs` jobs with 200 metric points each, written through
    the services (as the API and the worker would)."""
    from core.db import make_engine, migrate, session_scope
    from core.jobs.service import create_job
    from core.models import Metric, User
    from core.services.datasets import create_dataset
    from core.services.keys import create_key
    from core.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=database_url)
    migrate(settings.database_url)
    model = settings.model_roots[0] / "tiny"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text('{"model_type": "qwen2", "max_position_embeddings": 512}')
    rows = "".join(json.dumps({"prompt": f"{i}+{i}=", "answer": str(2 * i)}) + "\n" for i in range(64))
    engine = make_engine(settings.database_url)
    ids = []
    with session_scope(engine) as session:
        key, secret = create_key(session, "load")
        user = session.get(User, key.user_id)
        dataset = create_dataset(session, settings, user, source=io.BytesIO(rows.encode()),
                                 filename="load.jsonl", name="load", content_type="application/jsonl")
        for _ in range(jobs):
            job = create_job(session, settings, user, dataset_id=dataset.id, model="tiny",
                             config={"max_steps": 200, "batch_size": 4})
            ids.append(job.id)
            session.add_all(Metric(job_id=job.id, name="reward/mean", step=s, value=s / 200)
                            for s in range(1, 201))
    engine.dispose()
    return secret, ids


def _start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - the child's log, closed at exit
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", "--backlog", "4096"],
                            env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def _wait_up(base: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not start")


async def _client(http: httpx.AsyncClient, paths: list[str], until: float, out: list, codes: Counter,
                  retry_after: Counter) -> None:
    i = 0
    while time.monotonic() < until:
        path = paths[i % len(paths)]
        i += 1
        start = time.monotonic()
        try:
            response = await http.get(path)
            codes[response.status_code] += 1
            if response.status_code in (429, 503):
                retry_after["with" if "retry-after" in response.headers else "without"] += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        except httpx.TimeoutException:
            codes["timeout"] += 1
        except httpx.HTTPError:
            codes["connection_error"] += 1
            await asyncio.sleep(0.1)
        out.append(time.monotonic() - start)


async def _health(base: str, until: float, latencies: list, failures: Counter) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S) as http:
        while time.monotonic() < until:
            start = time.monotonic()
            try:
                response = await http.get("/v1/health")
                if response.status_code != 200:
                    failures[response.status_code] += 1
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
            latencies.append(time.monotonic() - start)
            await asyncio.sleep(0.25)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _health_process(base: str, seconds: float, out) -> None:
    """The prober in its own process: its latency is the server's, not this busy event loop's."""
    latencies: list[float] = []
    failures: Counter = Counter()
    asyncio.run(_health(base, time.monotonic() + seconds, latencies, failures))
    out.put((latencies, dict(failures)))


async def _load(base: str, secret: str, job_ids: list[str], clients: int, seconds: float) -> dict:
    paths = [p for job in job_ids for p in ("/v1/jobs?limit=20", f"/v1/jobs/{job}/metrics")]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    health: list[float] = []
    codes: Counter = Counter()
    retry_after: Counter = Counter()
    health_failures: Counter = Counter()
    until = time.monotonic() + seconds
    results: mp.Queue = mp.get_context("spawn").Queue()
    prober = mp.get_context("spawn").Process(target=_health_process, args=(base, seconds, results))
    prober.start()
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S, limits=limits,
                                 headers={"Authorization": f"Bearer {secret}"}) as http:
        await asyncio.gather(
            *(_client(http, paths[i % len(paths):] + paths[:i % len(paths)], until, latencies, codes,
                      retry_after) for i in range(clients)))
    health, failures = results.get(timeout=120)
    health_failures.update(failures)
    prober.join(timeout=30)
    answered = sum(v for k, v in codes.items() if isinstance(k, int))
    return {
        "clients": clients, "seconds": seconds, "requests": sum(codes.values()),
        "answered": answered, "per_second": round(answered / seconds, 1),
        "p50_ms": round(_quantile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(_quantile(latencies, 0.99) * 1000, 1),
        "status": {str(k): v for k, v in sorted(codes.items(), key=str)},
        "shed_retry_after": dict(retry_after),
        "health_probes": len(health), "health_max_ms": round(max(health, default=0) * 1000, 1),
        "health_failures": dict(health_failures),
    }


def run(clients: int, seconds: float, database_url: str | None = None,
        env_extra: dict[str, str] | None = None) -> dict:
    """Start an API, seed it, load it; returns the figures (see module docstring)."""
    with tempfile.TemporaryDirectory(prefix="basis-load-") as tmp, contextlib.ExitStack() as stack:
        data_dir = Path(tmp) / "data"
        url = database_url or f"sqlite:///{data_dir / 'basis.sqlite'}"
        if url.startswith("postgresql"):  # a fresh schema of that database, dropped afterwards
            url = stack.enter_context(fresh_postgres_schema(url, "load"))
        secret, job_ids = _seed(url, data_dir)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASIS_")}
        env.update({"BASIS_DATA_DIR": str(data_dir), "BASIS_DATABASE_URL": url,
                    "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)), **(env_extra or {})})
        api = _start_api(env, port, Path(tmp) / "api.log")
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_up(base, api)
            figures = asyncio.run(_load(base, secret, job_ids, clients, seconds))
        finally:
            api.terminate()
            try:
                api.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a stalled API does not even shut down
                api.kill()
                api.wait()
        figures["database"] = "postgres" if url.startswith("postgres") else "sqlite"
        figures["api_log_tail"] = (Path(tmp) / "api.log").read_text(errors="replace")[-600:]
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--database-url", help="default: SQLite in a fresh data dir (embedded stack)")
    parser.add_argument("--smoke", action="store_true", help="40 clients for 3 s")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.seconds = 40, 3.0
    print(json.dumps(run(args.clients, args.seconds, args.database_url), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
