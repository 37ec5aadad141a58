"""Benchmark: time to send one job message (`core.queue.enqueue_job`) to a broker.

    python -m benchmarks.enqueue --broker-url redis://127.0.0.1:6379/15 --sends 200
    python -m benchmarks.enqueue --broker-url sqla+sqlite:////tmp/bench-broker.sqlite --sends 200

Sends `--sends` messages one after another to a fresh queue, as the API does (one per created job),
and prints one JSON object: the first send (it builds the client and its connection) apart from the
median and 95th percentile of the rest. The queue is deleted (Redis) or the file left for the
caller (SQLite) afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from core.queue import enqueue_job
from core.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--sends", type=int, default=200)
    args = parser.parse_args()
    settings = Settings(broker_url=args.broker_url)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    times = []
    for i in range(args.sends):
        start = time.perf_counter()
        enqueue_job(f"job_{i}", queue, settings=settings)
        times.append((time.perf_counter() - start) * 1000)
    if args.broker_url.startswith("redis"):
        import redis

        redis.Redis.from_url(args.broker_url).delete(queue)
    rest = sorted(times[1:])
    print(json.dumps({"broker": args.broker_url.split(":")[0], "sends": args.sends,
                      "first_ms": round(times[0], 2),
                      "median_ms": round(statistics.median(rest), 2),
                      "p95_ms": round(rest[int(0.95 * (len(rest) - 1))], 2)}))


if __name__ == "__main__":
    main()
