"""Benchmark: metric points per second the worker's database sink sustains.

    python -m benchmarks.ingest --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Each configuration writes `--steps` steps through `DatabaseSink.log_step` (one transaction per
step: all metrics upserted with one executemany, one advantage histogram, the job's current_step),
exactly as a running job does, into a fresh schema (Postgres) or file (SQLite) built by the
migrations. "points" counts metric rows; the histogram and job update are extra work per step.
A `naive` row (one INSERT statement execution per metric, same transaction) shows what the
batching buys. Prints one JSON object per configuration.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from sqlalchemy import update

from benchmarks.fresh_db import fresh_database
from core.db import make_engine, run_in_transaction, session_scope
from core.models import Job, User
from trainer.sinks import Histogram
from worker.sink import DatabaseSink


def _new_job(engine) -> str:
    with session_scope(engine) as session:
        user = User(name=f"bench-{uuid.uuid4().hex[:8]}")
        session.add(user)
        session.flush()
        job = Job(owner_id=user.id, model="bench", estimator="basis", config={}, queue="gpu")
        session.add(job)
        session.flush()
        return job.id


def _log_step_row_by_row(sink: DatabaseSink, step: int, metrics: dict, hist: Histogram) -> None:
    """The baseline batching is measured against: one statement execution per metric row."""
    rows = [{"job_id": sink.job_id, "name": n, "step": step, "value": v} for n, v in metrics.items()]

    def write(conn) -> None:
        for row in rows:
            conn.execute(sink._metrics, row)
        conn.execute(sink._histograms, {"job_id": sink.job_id, "step": step, "name": "advantage",
                                        "edges": hist.edges, "counts": hist.counts})
        conn.execute(update(Job).where(Job.id == sink.job_id).values(current_step=step))

    run_in_transaction(sink.engine, write)


def run(engine, metrics_per_step: int, steps: int, naive: bool = False) -> dict:
    job_id = _new_job(engine)
    sink = DatabaseSink(engine, job_id)
    names = [f"bench/metric_{i:04d}" for i in range(metrics_per_step)]
    hist = Histogram(edges=[round(-1 + 0.1 * i, 6) for i in range(21)], counts=[3] * 20)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        metrics = {n: step * 0.001 + i for i, n in enumerate(names)}
        if naive:
            _log_step_row_by_row(sink, step, metrics, hist)
        else:
            sink.log_step(step, metrics, {"advantage": hist})
    seconds = time.perf_counter() - start
    points = metrics_per_step * steps
    return {"backend": engine.dialect.name, "mode": "row_by_row" if naive else "batched",
            "metrics_per_step": metrics_per_step, "steps": steps, "points": points,
            "seconds": round(seconds, 3), "points_per_s": round(points / seconds),
            "steps_per_s": round(steps / seconds, 1)}


def _writer(args: tuple[str, int, int]) -> dict:
    url, size, steps = args
    engine = make_engine(url)
    try:
        run(engine, size, 2)  # connect and warm the statement cache outside the timed window
        started = time.time()
        result = run(engine, size, steps)
        return {**result, "started": started, "ended": time.time()}
    finally:
        engine.dispose()


def run_parallel(url: str, size: int, steps: int, writers: int) -> dict:
    """`writers` processes (as `writers` workers would), each its own job and connection."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(writers) as pool:
        results = pool.map(_writer, [(url, size, steps)] * writers)
    # Wall time from the first writer's start to the last one's end (process start-up excluded).
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    points = sum(r["points"] for r in results)
    return {"backend": results[0]["backend"], "mode": f"batched x{writers} writers",
            "metrics_per_step": size, "steps": steps * writers, "points": points,
            "seconds": round(seconds, 3), "points_per_s": round(points / seconds),
            "steps_per_s": round(steps * writers / seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sizes", default="40,200,1000", help="metrics per step, comma list")
    parser.add_argument("--points", type=int, default=200_000, help="points per configuration")
    parser.add_argument("--naive", action="store_true", help="also run the row-by-row baseline")
    parser.add_argument("--writers", type=int, default=1, help="also run N concurrent writers")
    args = parser.parse_args(argv)
    with fresh_database(args.database_url) as url:
        engine = make_engine(url)
        try:
            for size in [int(s) for s in args.sizes.split(",")]:
                steps = max(10, args.points // size)
                print(json.dumps(run(engine, size, steps)), flush=True)
                if args.naive:
                    print(json.dumps(run(engine, size, max(10, steps // 10), naive=True)), flush=True)
                if args.writers > 1:
                    print(json.dumps(run_parallel(url, size, max(5, steps // args.writers),
                                                  args.writers)), flush=True)
        finally:
            engine.dispose()  # before the schema is dropped: an open connection would block it


if __name__ == "__main__":
    main()
