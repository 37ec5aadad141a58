"""Datasets: upload (validated, stored atomically), list, get, preview, delete. Imports from
Hugging Face datasets (core/services/dataset_import.py) convert rows and store them here.

Choices:
- The whole upload is read into memory (bounded by `max_upload_bytes`, 50 MB by default) and
  validated before anything touches the disk, so a bad file leaves nothing behind by construction.
- File first, row second: the file is written atomically under its final name, then the row is
  committed; if the commit fails the file is removed. A crash between the two leaves an orphan file
  (harmless, never a row pointing nowhere).
- Delete refuses (409) while a queued or running job uses the dataset; finished jobs keep their
  history and their `dataset_id` becomes null.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Dataset, Job, User, new_id
from core.services.errors import (
    Conflict,
    InsufficientStorage,
    Invalid,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
)
from core.services.jsonl import iter_lines, validate_jsonl
from core.services.pagination import Page, paginate
from core.services.storage import inside, require_free_space, write_atomic
from core.settings import Settings
from core.status import ACTIVE

# Clients label JSONL many ways; curl and httpx send octet-stream for an unknown extension.
ACCEPTED_TYPES = frozenset({
    "application/jsonl", "application/x-jsonlines", "application/jsonlines", "application/x-ndjson",
    "application/ndjson", "application/json", "text/jsonl", "text/plain", "text/x-jsonl",
    "application/octet-stream",
})
CHUNK = 1024 * 1024


def read_limited(source: BinaryIO, limit: int) -> bytes:
    """All of `source`, refusing (413) as soon as it passes `limit` bytes."""
    chunks, total = [], 0
    while chunk := source.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"the file is larger than the limit of {limit} bytes", "file")
        chunks.append(chunk)
    return b"".join(chunks)


def clean_filename(filename: str | None) -> str:
    name = Path((filename or "dataset.jsonl").replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or "dataset.jsonl"


def create_dataset(session: Session, settings: Settings, owner: User, *, source: BinaryIO,
                   filename: str | None, content_type: str | None, name: str | None = None) -> Dataset:
    """Validate and store an uploaded JSONL file; commits. Nothing is left behind on failure."""
    media_type = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if media_type not in ACCEPTED_TYPES:
        raise UnsupportedMediaType(
            f"content type {media_type!r} is not accepted; send JSONL (application/jsonl)", "file")
    if name is not None and not (0 < len(name.strip()) <= 200):
        raise Invalid("name must be 1-200 characters", "name")
    require_free_space(settings, "upload")
    data = read_limited(source, settings.max_upload_bytes)
    check_quota(session, settings, owner, len(data))  # before the costly validation
    rows = validate_jsonl(data, max_rows=settings.max_dataset_rows,
                          max_line_bytes=settings.max_line_bytes, max_depth=settings.max_json_depth)
    filename = clean_filename(filename)
    return store_jsonl(session, settings, owner, data=data, rows=rows, filename=filename,
                       name=name or filename)


def check_quota(session: Session, settings: Settings, owner: User, size: int) -> None:
    """507 when `size` more bytes would take the owner past `quota_dataset_bytes`."""
    if settings.quota_dataset_bytes:
        stored = session.execute(select(func.coalesce(func.sum(Dataset.bytes), 0))
                                 .where(Dataset.owner_id == owner.id)).scalar_one()
        if stored + size > settings.quota_dataset_bytes:
            raise InsufficientStorage(
                f"upload refused: your datasets take {stored} bytes and this one {size}; your "
                f"quota is {settings.quota_dataset_bytes} bytes (delete a dataset first)", "file")


def store_jsonl(session: Session, settings: Settings, owner: User, *, data: bytes, rows: int,
                filename: str, name: str) -> Dataset:
    """Store validated JSONL (`rows` rows) as the owner's new dataset; commits. Checks the quota
    first; the file is written atomically, then the row committed, and the file removed again if
    the commit fails. Shared by uploads and imports (core/services/dataset_import.py)."""
    check_quota(session, settings, owner, len(data))
    dataset_id = new_id("ds")
    relative = f"datasets/{dataset_id}.jsonl"
    path = settings.storage_dir / relative
    write_atomic(path, data)
    try:
        dataset = Dataset(id=dataset_id, owner_id=owner.id, name=name.strip(),
                          filename=filename, path=relative, rows=rows, bytes=len(data),
                          sha256=hashlib.sha256(data).hexdigest())
        session.add(dataset)
        session.commit()
    except BaseException:
        session.rollback()
        path.unlink(missing_ok=True)
        raise
    return dataset


def get_dataset(session: Session, owner: User, dataset_id: str) -> Dataset:
    """The owner's dataset `dataset_id`; 404 if missing or someone else's."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner_id != owner.id:
        raise NotFound(f"no dataset {dataset_id!r}", "dataset_id")
    return dataset


def list_datasets(session: Session, owner: User, *, after: str | None, limit: int) -> Page[Dataset]:
    """The owner's datasets, newest first."""
    stmt = select(Dataset).where(Dataset.owner_id == owner.id)
    return paginate(session, stmt, Dataset.id, after=after, limit=limit)


def dataset_path(settings: Settings, dataset: Dataset) -> Path:
    """Absolute path of the stored file."""
    return inside(settings.storage_dir, dataset.path)


def preview_rows(settings: Settings, dataset: Dataset, *, offset: int, limit: int) -> list[dict[str, Any]]:
    """Rows `offset .. offset+limit` of the stored file, parsed."""
    rows: list[dict[str, Any]] = []
    try:
        data = dataset_path(settings, dataset).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"the file of dataset {dataset.id!r} is missing on the server", "dataset_id") from None
    for index, (_, raw) in enumerate(iter_lines(data)):
        if index >= offset + limit:
            break
        if index >= offset:
            rows.append(json.loads(raw))
    return rows


def delete_dataset(session: Session, settings: Settings, owner: User, dataset_id: str) -> None:
    """Delete the row, then the file; commits. 409 while an unfinished job uses it."""
    dataset = get_dataset(session, owner, dataset_id)
    active = session.scalars(select(Job.id).where(
        Job.dataset_id == dataset.id, Job.status.in_([str(s) for s in ACTIVE]))
        .order_by(Job.id).limit(6)).all()
    if active:  # the owner's own work (jobs and evaluations): name it, so they can cancel it
        shown = ", ".join(active[:5]) + (", ..." if len(active) > 5 else "")
        raise Conflict(f"dataset {dataset_id!r} is used by queued or running work ({shown}); cancel "
                       "it or wait for it to finish, then delete the dataset", "dataset_id")
    path = dataset_path(settings, dataset)
    session.delete(dataset)
    session.commit()
    path.unlink(missing_ok=True)
