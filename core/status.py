"""Job statuses and the allowed transitions: the one declaration, with no dependencies.

Standard library only, so the dashboard and the client can import it without SQLAlchemy.
queued -> starting -> estimating_priors -> running -> succeeded | failed | cancelled (DESIGN.md 2);
a failed or cancelled job may be retried (back to queued). `starting` is set by the worker's claim,
in the claim's transaction, so a job a worker has taken never shows `queued` (a cancel of a
`queued` job ends it at once, which would lie about a job a worker is already loading).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Job lifecycle: queued -> starting -> estimating_priors -> running -> succeeded | failed |
    cancelled."""

    queued = "queued"
    starting = "starting"
    estimating_priors = "estimating_priors"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class JobKind(StrEnum):
    """What a `jobs` row runs: a training job, or an evaluation on the same lifecycle."""

    train = "train"
    eval = "eval"


TERMINAL: frozenset[str] = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})
ACTIVE: frozenset[str] = frozenset(set(JobStatus) - TERMINAL)
RETRYABLE: frozenset[str] = frozenset({JobStatus.failed, JobStatus.cancelled})

# Moves a worker makes (core/jobs/lifecycle.py `transition`); the user's cancel and retry are
# `lifecycle.cancel` (from an ACTIVE status) and `lifecycle.retry` (from a RETRYABLE one).
TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.queued: frozenset(
        {JobStatus.starting, JobStatus.estimating_priors, JobStatus.running, JobStatus.failed,
         JobStatus.cancelled}
    ),
    JobStatus.starting: frozenset(
        {JobStatus.estimating_priors, JobStatus.running, JobStatus.failed, JobStatus.cancelled}
    ),
    JobStatus.estimating_priors: frozenset(
        {JobStatus.running, JobStatus.failed, JobStatus.cancelled}
    ),
    JobStatus.running: frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}),
}
