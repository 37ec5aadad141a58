"""Reading what the worker wrote: metrics (downsampled in SQL), advantage histograms, checkpoints.

Downsampling (`max_points`): the steps of the selected points, [lo, hi] (two index lookups), are cut
into buckets of `(hi - lo) // max_points + 1` steps, so every series has at most `max_points`
buckets and all series share bucket boundaries (their points line up on the x axis); each bucket
reports its last step and the mean of its finite values. One GROUP BY, deterministic; with few
points (width 1) it returns the raw series. Non-finite values come back as null (JSON has no NaN).

On PostgreSQL the whole `data` array is built as JSON text by the database (`json_agg`): for
100,000 points that is about 4x faster than turning rows into Python objects and encoding them
again. Other databases take the portable path; the tests hold both to the same answers.

Histograms (`max_steps`) are downsampled with the same buckets: `(hi - lo) // max_steps + 1` steps
each, shared by every name, so at most `max_steps` histograms per name cover the whole run (the
first bucket starts at the first step, the last ends at the latest). A bucket's histograms are
merged, not sampled: one step's histogram is a single batch, noisy, and a picked step would hide
what happened between picks. Counts are summed; a histogram whose edges differ from those of the
bucket's latest step is rebinned onto them first (mass spread uniformly within each source bin,
mass outside the target range folded into its end bins, as the trainer does), and the float
counts are rounded by largest remainder, so every bucket conserves its total count exactly.
Malformed rows (edges not finite and increasing, or not one more than the counts) are left out.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, func, select, text
from sqlalchemy.orm import Session

from core.models import AdvantageHistogram, Checkpoint, Job, Metric
from core.services.errors import NotFound
from core.services.storage import inside
from core.settings import Settings

CHUNK = 1024 * 1024
_M = Metric.__table__.c
_H = AdvantageHistogram.__table__.c


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


def _well_formed_edges(edges: object) -> np.ndarray | None:
    """`edges` as a (bins+1,) float array when finite and strictly increasing, else None."""
    if not isinstance(edges, list) or len(edges) < 2:
        return None
    try:
        array = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.ndim != 1 or not np.isfinite(array).all() or not (np.diff(array) > 0).all():
        return None
    return array


def _good_counts(counts: Sequence[object], bins: int) -> tuple[np.ndarray, np.ndarray]:
    """((k, bins) float array of the well-formed lists in `counts` (finite, >= 0), (n,) bool mask of them)."""
    try:  # the common case, in one conversion
        array = np.asarray(counts, dtype=np.float64)
        if array.shape == (len(counts), bins) and np.isfinite(array).all() and (array >= 0).all():
            return array, np.ones(len(counts), dtype=bool)
    except (TypeError, ValueError):
        pass
    good, mask = [], np.zeros(len(counts), dtype=bool)
    for i, row in enumerate(counts):
        try:
            array = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if array.shape == (bins,) and np.isfinite(array).all() and (array >= 0).all():
            good.append(array)
            mask[i] = True
    return np.asarray(good, dtype=np.float64).reshape(len(good), bins), mask


def rebin(edges: np.ndarray, counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(bins_target,) float mass of a histogram (`edges` (bins+1,), `counts` (bins,)) on `target` edges.

    Mass is spread uniformly within each source bin; mass below target[0] or above target[-1]
    lands in the end bins, so the total is kept."""
    cdf = np.concatenate([[0.0], np.cumsum(counts)])  # (bins+1,) mass below each source edge
    inner = np.interp(target[1:-1], edges, cdf)  # clamps to 0 / total outside the source range
    return np.diff(np.concatenate([[0.0], inner, [cdf[-1]]]))


def _round_keeping_total(mass: np.ndarray, total: int) -> list[int]:
    """Integers within 1 of `mass` (>= 0) that sum to `total` (largest-remainder rounding)."""
    mass = np.maximum(mass, 0.0)
    floor = np.floor(mass)
    short = int(total - floor.sum())
    order = np.argsort(-(mass - floor), kind="stable")
    floor[order[:max(short, 0)]] += 1
    return [int(c) for c in floor]


# One bucket's rows that share edges: (edges, steps (k,) in any order, counts (k,) one list per step).
EdgeGroup = tuple[object, Sequence[int], Sequence[object]]


def merge_histograms(groups: Sequence[EdgeGroup]) -> dict[str, Any] | None:
    """One histogram from a bucket's rows: {"step_from", "step_to", "edges", "counts"}, or None.

    Counts are summed on the edges of the latest well-formed row; other edges are rebinned."""
    parsed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # edges (bins+1,), steps kept (k,), counts (k, bins)
    for edges, steps, counts in groups:
        array = _well_formed_edges(edges)
        if array is not None:
            good, mask = _good_counts(counts, array.size - 1)
            if mask.any():
                parsed.append((array, np.asarray(steps)[mask], good))
    if not parsed:
        return None
    target = max(parsed, key=lambda p: p[1].max())[0]
    total, mass = 0, np.zeros(target.size - 1)
    for row_edges, _, row_counts in parsed:
        summed = row_counts.sum(axis=0)  # (bins,)
        total += int(round(summed.sum()))
        same = row_edges.shape == target.shape and bool((row_edges == target).all())
        mass += summed if same else rebin(row_edges, summed, target)
    return {"step_from": int(min(p[1].min() for p in parsed)), "step_to": int(max(p[1].max() for p in parsed)),
            "edges": target.tolist(), "counts": _round_keeping_total(mass, total)}


def _edges_key(edges: object) -> object:
    try:
        key: tuple[object, ...] = tuple(edges)  # type: ignore[arg-type]  # not iterable: TypeError below
        hash(key)
        return key
    except TypeError:
        return json.dumps(edges)


def _histogram_groups(session: Session, job: Job, since_step: int | None, lo: int,
                      width: int) -> dict[tuple[int, str], list[EdgeGroup]]:
    """(bucket, name) -> that bucket's rows grouped by edges. PostgreSQL groups and concatenates
    the JSON itself (one decode per group instead of two per row: 3x faster for 20,000 steps)."""
    buckets: dict[tuple[int, str], list[EdgeGroup]] = {}
    if session.get_bind().dialect.name == "postgresql":
        # No ORDER BY in the aggregates: both see a group's rows in the same order, which is all
        # the merge needs, and leaving it out lets PostgreSQL hash instead of sorting wide rows.
        query = text("SELECT name, (step - :lo) / :width AS bucket, edges::text, "
                     "'[' || string_agg(step::text, ',') || ']', "
                     "'[' || string_agg(coalesce(counts::text, 'null'), ',') || ']' "
                     "FROM advantage_histograms WHERE job_id = :job_id AND step >= :since "
                     "GROUP BY name, bucket, edges::text")
        params = {"lo": lo, "width": width, "job_id": job.id, "since": since_step or 0}
        for name, bucket, edges, steps, counts in session.execute(query, params):
            group = (json.loads(edges) if edges is not None else None, json.loads(steps), json.loads(counts))
            buckets.setdefault((bucket, name), []).append(group)
        return buckets
    where = [_H.job_id == job.id] + ([_H.step >= since_step] if since_step is not None else [])
    rows = session.execute(select(_H.name, _H.step, _H.edges, _H.counts).where(*where)
                           .order_by(_H.name, _H.step))
    by_edges: dict[tuple[int, str], dict[object, tuple[object, list[int], list[object]]]] = {}
    for name, step, edges, counts in rows:
        groups = by_edges.setdefault((int(step - lo) // width, name), {})
        _, steps, counts_list = groups.setdefault(_edges_key(edges), (edges, [], []))
        steps.append(step)
        counts_list.append(counts)
    return {key: list(groups.values()) for key, groups in by_edges.items()}


def downsample_histograms(session: Session, job: Job, *, since_step: int | None,
                          max_steps: int) -> list[dict[str, Any]]:
    """At most `max_steps` histograms per name covering `job` from `since_step` to its latest step.

    Each: {"name", "step" (= step_to), "step_from", "step_to", "edges", "counts"}; sorted by
    bucket, then name."""
    where = [_H.job_id == job.id] + ([_H.step >= since_step] if since_step is not None else [])
    lo, hi = session.execute(select(func.min(_H.step), func.max(_H.step)).where(*where)).one()
    if lo is None:
        return []
    buckets = _histogram_groups(session, job, since_step, lo, (hi - lo) // max_steps + 1)
    result = []
    for (_, name), groups in sorted(buckets.items()):
        merged = merge_histograms(groups)
        if merged is not None:
            result.append({"name": name, "step": merged["step_to"], **merged})
    return result


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
