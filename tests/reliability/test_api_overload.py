"""Issue 18, must-show 2 (small form): more concurrent clients than the API has threads and
database connections. Every request is answered (200, or a fast 503 with Retry-After), none times
out, and /v1/health answers throughout.

Before the fix, authentication held a pooled connection while the route waited for a thread, and
every thread waited for a connection (fastapi#3205): with 4 threads and 2 connections the API
stalled until the 30 s pool timeout, so clients timed out (20 s) and health did not answer.
The full benchmark (200 and 1,000 clients) is `python -m benchmarks.api_load`, docs/benchmarks.md.
"""

from __future__ import annotations

import pytest

from benchmarks.api_load import run

pytestmark = [pytest.mark.slow]


def test_more_clients_than_threads_and_connections_are_all_answered():
    figures = run(clients=40, seconds=4.0, env_extra={
        "BASIS_API_THREADS": "4", "BASIS_DB_POOL_SIZE": "2", "BASIS_DB_MAX_OVERFLOW": "0",
        "BASIS_DB_POOL_TIMEOUT": "30", "BASIS_API_MAX_INFLIGHT": "16"})
    status = figures["status"]
    assert "timeout" not in status and "connection_error" not in status, figures
    assert set(status) <= {"200", "503"} and status.get("200", 0) > 0, figures
    assert figures["shed_retry_after"].get("without", 0) == 0, figures
    assert figures["health_failures"] == {} and figures["health_probes"] >= 2, figures
    print(f"\nFIGURES overload: {figures['requests']} requests from 40 clients on 4 threads / "
          f"2 connections: {status}; p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
          f"health worst {figures['health_max_ms']} ms")
