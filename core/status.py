"""Job statuses and the allowed transitions: the one declaration, with no dependencies.

Standard library only, so the dashboard and the client can import it without SQLAlchemy.
queued -> estimating_priors -> running -> succeeded | failed | cancelled (DESIGN.md 2);
a failed or cancelled job may be retried (back to queued).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Job lifecycle: queued -> estimating_priors -> running -> succeeded | failed | cancelled."""

    queued = "queued"
    estimating_priors = "estimating_priors"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL: frozenset[str] = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
ACTIVE: frozenset[str] = frozenset(set(JobStatus) - TERMINAL)
RETRYABLE: frozenset[str] = frozenset({JobStatus.failed, JobStatus.cancelled})

# Moves a worker makes (core/jobs/lifecycle.py `transition`); the user's cancel and retry are
# `lifecycle.cancel` (from an ACTIVE status) and `lifecycle.retry` (from a RETRYABLE one).
TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.queued: frozenset(
        {JobStatus.estimating_priors, JobStatus.running, JobStatus.failed, JobStatus.cancelled}
    ),
    JobStatus.estimating_priors: frozenset(
        {JobStatus.running, JobStatus.failed, JobStatus.cancelled}
    ),
    JobStatus.running: frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}),
}
