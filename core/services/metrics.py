"""Reading what the worker wrote: metrics (downsampled in SQL), advantage histograms, checkpoints.

Downsampling (`max_points`): per metric name, steps in [lo, hi] are cut into equal-width buckets of
`(hi - lo) // max_points + 1` steps, so there are at most `max_points` buckets; each bucket reports
its last step and the mean of its values. It runs as one GROUP BY on the (job_id, name, step)
primary-key index, is deterministic, and with few points (width 1) returns the raw series.
Non-finite values come back as null, since JSON has no NaN.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import AdvantageHistogram, Checkpoint, Job, Metric
from core.services.errors import NotFound
from core.services.storage import inside
from core.settings import Settings

CHUNK = 1024 * 1024


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def read_metrics(session: Session, job: Job, *, names: list[str] | None = None,
                 since_step: int | None = None, max_points: int | None = None) -> list[dict[str, Any]]:
    """[{"name", "steps", "values"}] for `job`, sorted by name, each series sorted by step."""
    m = Metric.__table__.c
    where = [m.job_id == job.id]
    if names:
        where.append(m.name.in_(names))
    if since_step is not None:
        where.append(m.step >= since_step)
    if max_points is None:
        stmt = select(m.name, m.step, m.value).where(*where).order_by(m.name, m.step)
    else:
        span = (select(m.name, func.min(m.step).label("lo"), func.max(m.step).label("hi"))
                .where(*where).group_by(m.name).subquery())
        bucket = (m.step - span.c.lo) // ((span.c.hi - span.c.lo) // max_points + 1)
        last_step = func.max(m.step)
        stmt = (select(m.name, last_step, func.avg(m.value))
                .join(span, span.c.name == m.name).where(*where)
                .group_by(m.name, bucket).order_by(m.name, last_step))
    series: dict[str, dict[str, list]] = {}
    for name, step, value in session.execute(stmt):
        entry = series.setdefault(name, {"name": name, "steps": [], "values": []})
        entry["steps"].append(step)
        entry["values"].append(_finite(value))
    return list(series.values())


def list_histograms(session: Session, job: Job, *, since_step: int | None,
                    limit: int) -> tuple[list[AdvantageHistogram], bool, int | None]:
    """Histograms of `job` from `since_step` on, by step; pages end on a step boundary.

    Returns (rows, has_more, the since_step of the next page)."""
    stmt = select(AdvantageHistogram).where(AdvantageHistogram.job_id == job.id)
    if since_step is not None:
        stmt = stmt.where(AdvantageHistogram.step >= since_step)
    rows = list(session.scalars(stmt.order_by(AdvantageHistogram.step, AdvantageHistogram.name)
                                .limit(limit + 1)))
    if len(rows) <= limit:
        return rows, False, None
    page = rows[:limit]
    if rows[limit].step == page[-1].step and page[0].step != page[-1].step:
        page = [row for row in page if row.step != rows[limit].step]  # don't split a step
        return page, True, rows[limit].step
    return page, True, page[-1].step + 1


def list_checkpoints(session: Session, job: Job) -> list[Checkpoint]:
    """Checkpoints of `job`, by step."""
    return list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id)
                                .order_by(Checkpoint.step)))


def get_checkpoint(session: Session, settings: Settings, job: Job, checkpoint_id: str) -> tuple[Checkpoint, Path]:
    """The checkpoint row and its directory (inside the storage dir, existing); 404 otherwise."""
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.job_id != job.id:
        raise NotFound(f"no checkpoint {checkpoint_id!r} in job {job.id!r}", "checkpoint_id")
    path = inside(settings.storage_dir, checkpoint.path)
    if not path.is_dir():
        raise NotFound(f"the files of checkpoint {checkpoint_id!r} are gone", "checkpoint_id")
    return checkpoint, path


def iter_tar(directory: Path, arcname: str) -> Iterator[bytes]:
    """A POSIX tar of `directory` (regular files and dirs; symlinks skipped), streamed in chunks."""
    for path in [directory, *sorted(directory.rglob("*"))]:
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            continue
        stat = path.stat()
        info = tarfile.TarInfo(str(Path(arcname) / path.relative_to(directory)))
        info.mtime, info.mode = int(stat.st_mtime), stat.st_mode & 0o777
        if path.is_dir():
            info.type = tarfile.DIRTYPE
            yield info.tobuf(tarfile.PAX_FORMAT)
            continue
        info.size = stat.st_size
        yield info.tobuf(tarfile.PAX_FORMAT)
        remaining = info.size
        with open(path, "rb") as handle:
            while remaining > 0:
                # A file that shrank while we read is padded, so the archive stays well formed.
                chunk = handle.read(min(CHUNK, remaining)) or b"\0" * min(CHUNK, remaining)
                remaining -= len(chunk)
                yield chunk
        if info.size % 512:
            yield b"\0" * (512 - info.size % 512)
    yield b"\0" * 1024  # end-of-archive marker: two empty blocks
