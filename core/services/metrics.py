"""Reading what the worker wrote: metrics (downsampled in SQL), advantage histograms, checkpoints.

Downsampling (`max_points`): the steps of the selected points, [lo, hi] (two index lookups), are cut
into buckets of `(hi - lo) // max_points + 1` steps, so every series has at most `max_points`
buckets and all series share bucket boundaries (their points line up on the x axis); each bucket
reports its last step and the mean of its finite values. One GROUP BY, deterministic; with few
points (width 1) it returns the raw series. Non-finite values come back as null (JSON has no NaN).

On PostgreSQL the whole `data` array is built as JSON text by the database (`json_agg`): for
100,000 points that is about 4x faster than turning rows into Python objects and encoding them
again. Other databases take the portable path; the tests hold both to the same answers.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.orm import Session

from core.models import AdvantageHistogram, Checkpoint, Job, Metric
from core.services.errors import NotFound
from core.services.storage import inside
from core.settings import Settings

CHUNK = 1024 * 1024
_M = Metric.__table__.c


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _where(job: Job, names: list[str] | None, since_step: int | None) -> ColumnElement[bool]:
    conditions = [_M.job_id == job.id]
    if names:
        conditions.append(_M.name.in_(names))
    if since_step is not None:
        conditions.append(_M.step >= since_step)
    return and_(*conditions)


def _buckets(session: Session, where: ColumnElement[bool], max_points: int) -> tuple[int, int] | None:
    """(lo, width) of the downsampling buckets, or None when nothing matches."""
    lo, hi = session.execute(select(func.min(_M.step), func.max(_M.step)).where(where)).one()
    return None if lo is None else (lo, (hi - lo) // max_points + 1)


def read_metrics(session: Session, job: Job, *, names: list[str] | None = None,
                 since_step: int | None = None, max_points: int | None = None) -> list[dict[str, Any]]:
    """[{"name", "steps", "values"}] for `job`, sorted by name, each series sorted by step."""
    where = _where(job, names, since_step)
    if max_points is None:
        stmt = select(_M.name, _M.step, _M.value).where(where).order_by(_M.name, _M.step)
    else:
        buckets = _buckets(session, where, max_points)
        if buckets is None:
            return []
        lo, width = buckets
        last_step = func.max(_M.step)
        stmt = (select(_M.name, last_step, func.avg(_M.value)).where(where)
                .group_by(_M.name, (_M.step - lo) // width).order_by(_M.name, last_step))
    series: dict[str, dict[str, list]] = {}
    for name, step, value in session.execute(stmt):
        entry = series.setdefault(name, {"name": name, "steps": [], "values": []})
        entry["steps"].append(step)
        entry["values"].append(_finite(value))
    return list(series.values())


_PG_FINITE = "CASE WHEN value IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE value END"


def read_metrics_json(session: Session, job: Job, *, names: list[str] | None = None,
                      since_step: int | None = None, max_points: int | None = None) -> str:
    """`read_metrics(...)` as JSON text; built by the database on PostgreSQL."""
    if session.get_bind().dialect.name != "postgresql":
        return json.dumps(read_metrics(session, job, names=names, since_step=since_step,
                                       max_points=max_points))
    params: dict[str, Any] = {"job_id": job.id, "names": names or [], "since": since_step or 0}
    where = "job_id = :job_id AND step >= :since" + (" AND name = ANY(:names)" if names else "")
    if max_points is None:
        series = (f"SELECT name, json_agg(step ORDER BY step) AS steps, "
                  f"json_agg({_PG_FINITE} ORDER BY step) AS \"values\" FROM metrics "
                  f"WHERE {where} GROUP BY name")
    else:
        buckets = _buckets(session, _where(job, names, since_step), max_points)
        if buckets is None:
            return "[]"
        params["lo"], params["width"] = buckets
        series = (f"SELECT name, json_agg(last_step ORDER BY last_step) AS steps, "
                  f"json_agg(mean ORDER BY last_step) AS \"values\" FROM ("
                  f"SELECT name, max(step) AS last_step, avg({_PG_FINITE}) AS mean FROM metrics "
                  f"WHERE {where} GROUP BY name, (step - :lo) / :width) AS b GROUP BY name")
    query = f"SELECT coalesce(json_agg(s ORDER BY s.name), '[]')::text FROM ({series}) AS s"
    return session.execute(text(query), params).scalar_one()


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
