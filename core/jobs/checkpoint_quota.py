"""A user's quota on stored checkpoints (issue 18), checked by the worker before each is written.

Settings `quota_checkpoint_bytes` and `quota_checkpoints` (0 = no quota) bound what one user's
jobs keep in the `checkpoints` table, summed over all of their jobs. Before job J writes a
checkpoint of about `nbytes`:
- if it fits, nothing happens;
- else J's own older checkpoints go, oldest first, until it fits. J's newest one always stays: it
  is where a resume (after a crash, or a retry) starts until the new one exists. Checkpoints of
  the user's other jobs are never touched: a finished job's checkpoint is something its owner
  may still download, export or evaluate, and a running neighbour must be able to resume;
- if even that is not enough, `CheckpointQuotaExceeded` says how much is stored, the quota, what
  the checkpoint needs, and what to do (delete old jobs; retry resumes from the newest one). The
  job fails with that message before anything is written.

The rows are deleted in the caller's transaction; the caller removes the directories after it
commits (a crash in between leaves unreferenced files, never rows pointing at nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, select

from core.models import Checkpoint, Job
from core.settings import Settings


class CheckpointQuotaExceeded(Exception):
    """The checkpoint would take the user past their quota even without the job's older ones."""


@dataclass(frozen=True)
class Pruned:
    step: int
    path: Path  # absolute
    bytes: int


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def make_room(conn: Connection, settings: Settings, job_id: str, step: int, nbytes: int) -> list[Pruned]:
    """Delete the rows of job `job_id`'s older checkpoints until its checkpoint of `step` (about
    `nbytes`) fits its owner's quota; returns what was deleted (directories still on disk).
    Raises CheckpointQuotaExceeded, deleting nothing, when it cannot fit."""
    max_bytes, max_count = settings.quota_checkpoint_bytes, settings.quota_checkpoints
    if not max_bytes and not max_count:
        return []
    owner = conn.scalar(select(Job.owner_id).where(Job.id == job_id))
    rows = conn.execute(select(Checkpoint.id, Checkpoint.job_id, Checkpoint.step, Checkpoint.path,
                               Checkpoint.bytes)
                        .join(Job, Job.id == Checkpoint.job_id)
                        .where(Job.owner_id == owner)).all()
    # Re-saving a step (after a resume) replaces that checkpoint: it does not count twice.
    stored = [r for r in rows if not (r.job_id == job_id and r.step == step)]
    used, count = sum(r.bytes or 0 for r in stored), len(stored)

    def fits() -> bool:
        return ((not max_bytes or used + nbytes <= max_bytes)
                and (not max_count or count + 1 <= max_count))

    own = sorted((r for r in stored if r.job_id == job_id), key=lambda r: r.step)
    prunable = own[:-1]  # the newest stays: a resume starts there until this one exists
    chosen = []
    for row in prunable:
        if fits():
            break
        chosen.append(row)
        used, count = used - (row.bytes or 0), count - 1
    if not fits():
        quota = " and ".join(q for q in (max_bytes and _mb(max_bytes),
                                         max_count and f"{max_count} checkpoints") if q)
        kept = f"; its checkpoint at step {own[-1].step} is kept, so a retry resumes there" if own else ""
        raise CheckpointQuotaExceeded(
            f"checkpoint quota exceeded: your jobs store {count} checkpoints, {_mb(used)} "
            f"(quota {quota}), and this job's checkpoint at step {step} needs about {_mb(nbytes)} "
            f"even after removing this job's older checkpoints. Delete jobs you no longer need "
            f"(DELETE /v1/jobs/{{id}} removes their checkpoints) or ask the administrator for a "
            f"larger quota, then retry this job{kept}")
    if chosen:
        conn.execute(delete(Checkpoint).where(Checkpoint.id.in_([r.id for r in chosen])))
    return [Pruned(r.step, _absolute(settings, r.path), r.bytes or 0) for r in chosen]


def _absolute(settings: Settings, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else settings.storage_dir / p
