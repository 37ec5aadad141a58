"""Benchmark: how long the Job detail page takes to render for a job with 2,000 steps.

Seeds a fresh SQLite database with a finished 2,000-step BASIS job (every metric, value-MSE probes,
2,000 advantage histograms, events, a checkpoint), serves the real API with uvicorn on localhost,
and runs the dashboard's Job detail page with Streamlit's AppTest:
- cold: response caches cleared before each run (every request goes to the API);
- warm: caches kept (what a user sees on a rerun within the cache TTL).
The time is the whole script run: HTTP requests, JSON decoding, data frames, Altair specs.
Prints one JSON object.

    python -m benchmarks.dashboard [--steps 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "dashboard")]  # the seeded stack the dashboard tests use

import streamlit as st  # noqa: E402
from dashboard_stack import ApiServer, seeded_stack  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402


def render_once(url: str, key: str, job_id: str) -> tuple[float, int]:
    """Seconds to render Job detail (after the app's first, jobs-page run) and its chart count."""
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.session_state["api_url"], at.session_state["api_key"] = url, key
    at.run()
    at.switch_page("views/job_detail.py")
    at.query_params["job"] = job_id
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    if at.exception or at.error:
        raise RuntimeError(f"the page failed: {at.exception or [e.value for e in at.error]}")
    return seconds, len(at.get("vega_lite_chart"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="basis-bench-dash-") as tmp:
        _, app, seeded = seeded_stack(Path(tmp), steps=args.steps)
        with ApiServer(app) as server:
            cold, warm, n_charts = [], [], 0
            for _ in range(args.repeats):
                st.cache_data.clear()
                seconds, n_charts = render_once(server.url, seeded.key, seeded.basis_job)
                cold.append(seconds)
            for _ in range(args.repeats):
                warm.append(render_once(server.url, seeded.key, seeded.basis_job)[0])
        app.state.engine.dispose()
    print(json.dumps({
        "steps": args.steps, "charts": n_charts, "repeats": args.repeats,
        "cold_seconds": {"median": round(statistics.median(cold), 3), "max": round(max(cold), 3)},
        "warm_seconds": {"median": round(statistics.median(warm), 3), "max": round(max(warm), 3)},
    }))


if __name__ == "__main__":
    main()
