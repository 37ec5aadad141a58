"""Pure functions from API payloads to the dashboard's tables (jobs, events, checkpoints).

Times stay timezone-aware UTC; durations of running jobs are measured to `now` so a live table
shows a growing duration, and a job that never started has none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from client.summary import format_duration


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 timestamp from the API as aware UTC (naive means UTC), or None."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration_seconds(job: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """Seconds from start to finish (or to `now` while the job is still active)."""
    started = parse_time(job.get("started_at"))
    if started is None:
        return None
    finished = parse_time(job.get("finished_at")) or (now or datetime.now(UTC))
    return max(0.0, (finished - started).total_seconds())


def progress(job: Mapping[str, Any]) -> float | None:
    """Fraction of `max_steps` done, in [0, 1]; 1 for a succeeded job; None when unknown."""
    if job.get("status") == "succeeded":
        return 1.0
    max_steps = job.get("max_steps")
    if not max_steps:
        return None
    return min(1.0, max(0.0, (job.get("current_step") or 0) / max_steps))


def jobs_frame(jobs: Iterable[Mapping[str, Any]], dataset_names: Mapping[str, str] | None = None,
               now: datetime | None = None) -> pd.DataFrame:
    """One row per job: id, status, estimator, model, dataset, step, progress, reward, start, duration."""
    names = dataset_names or {}
    rows = []
    for job in jobs:
        latest = job.get("latest_metrics") or {}
        dataset_id = job.get("dataset_id")
        max_steps = job.get("max_steps")
        rows.append({
            "id": job["id"],
            "status": job["status"],
            "estimator": job.get("estimator", ""),
            "model": job.get("model", ""),
            "dataset": names.get(dataset_id, dataset_id) if dataset_id else "(deleted)",
            "step": f"{job.get('current_step') or 0}" + (f" / {max_steps}" if max_steps else ""),
            "progress": progress(job),
            "latest reward": latest.get("reward/mean"),
            "started": parse_time(job.get("started_at")),
            "duration": format_duration(duration_seconds(job, now)),
        })
    columns = ["id", "status", "estimator", "model", "dataset", "step", "progress", "latest reward",
               "started", "duration"]
    return pd.DataFrame(rows, columns=columns)


def events_frame(events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Events newest first: time, level, kind, message."""
    rows = [{"time": parse_time(e.get("ts") or e.get("created_at")), "level": e.get("level", "info"),
             "kind": e.get("kind", ""), "message": e.get("message", "")} for e in events]
    frame = pd.DataFrame(rows, columns=["time", "level", "kind", "message"])
    return frame.iloc[::-1].reset_index(drop=True)


def format_bytes(size: int | None) -> str:
    """`1.5 MB` style sizes (powers of 1024)."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
