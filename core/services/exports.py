"""Export a job's checkpoint as a model of its owner: a directory in the first models root and a
`model_records` row (source "export"), together or not at all.

Choices:
- The files are written by `trainer.export` into a hidden staging directory of the first models root
  (the scan skips hidden names, and a rename within one volume is atomic), the row is inserted
  and flushed (a name taken meanwhile fails on the unique index, as 409), the staging directory
  is renamed to the model's path, then the transaction commits. Any failure removes the staging
  directory, or the moved one when the commit failed: no row without files, no files without a row.
- A name is the user's choice under `ft/` (catalog.EXPORT_PREFIX, 422 otherwise: the rest of the
  namespace is shared) or `ft/<job short id>-step<N>`; it is unique across the catalogue (records
  of every owner and the directory scan), so a clash is 409 naming it.
- The worker's export of a succeeded job's final checkpoint is this same function, fenced on its
  lease (`before_commit`) and idempotent: the export of a checkpoint already exported by default
  is that record again (a redelivered job does not fail on its own earlier export).
- The model keeps the training defaults the job's model recommends (`basis_defaults.json`,
  trainer/model_defaults.py): a fine-tuned copy has the same tokenizer and answer format, so a job
  on it should get the same reward and lengths as one on its base. A LoRA export copies them with
  its base's side files; a full fine-tune's checkpoint holds only what `save_pretrained` writes,
  so they are copied from the job's model here (none when that model is gone or has none).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import Checkpoint, Job, ModelRecord, new_id
from core.services import catalog
from core.services.errors import Conflict, InsufficientStorage, Invalid, NotFound
from core.services.metrics import get_checkpoint
from core.settings import Settings
from trainer.export import (
    BaseModelDirs,
    ExportError,
    MergeUnavailable,
    checkpoint_kind,
    export_checkpoint,
)
from trainer.model_defaults import DEFAULTS_FILE

STAGING_PREFIX = ".export-"


def default_name(job: Job, step: int) -> str:
    """`ft/<job short id>-step<N>`: the random tail of the job id, unique in practice."""
    return f"ft/{job.id[-12:]}-step{step}"


def final_checkpoint(session: Session, job: Job) -> Checkpoint | None:
    return session.scalar(select(Checkpoint).where(Checkpoint.job_id == job.id)
                          .order_by(Checkpoint.step.desc()).limit(1))


def _check_free(root: Path, source: Path) -> None:
    """507 when the models root cannot hold a copy of `source` (the checkpoint or base weights)."""
    needed = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    free = shutil.disk_usage(root).free
    if free < needed:
        raise InsufficientStorage(f"the models volume has {free >> 20} MB free; the export needs "
                                  f"about {needed >> 20} MB")


def _base_dirs(session: Session, settings: Settings, job: Job) -> BaseModelDirs:
    try:
        resolved = catalog.resolve_model(session, settings, job.owner_id, job.model)
    except (NotFound, Conflict):
        raise Conflict(f"the model job {job.id!r} trained on ({job.model!r}) is no longer available; "
                       "a LoRA checkpoint cannot be exported without it", "checkpoint_id") from None
    return BaseModelDirs(resolved.path, resolved.base)


def _carry_defaults(session: Session, settings: Settings, job: Job, out_dir: Path) -> None:
    """Copy the job's model's `basis_defaults.json` into the export when it has none (module
    docstring); nothing when that model is no longer available or recommends nothing."""
    if (out_dir / DEFAULTS_FILE).exists():
        return
    try:
        resolved = catalog.resolve_model(session, settings, job.owner_id, job.model)
    except (NotFound, Conflict):
        return
    source = resolved.path / DEFAULTS_FILE
    if source.is_file():
        shutil.copy2(source, out_dir / DEFAULTS_FILE)


def _check_free_name(session: Session, settings: Settings, name: str) -> Path:
    """The directory model `name` will have; 409 when the name or the directory is taken."""
    taken = session.scalar(select(ModelRecord.id).where(ModelRecord.name == name)) is not None
    final = settings.model_roots[0] / name
    if taken or name in catalog.scan_models(settings) or final.exists():
        raise Conflict(f"a model named {name!r} already exists; choose another name", "name")
    return final


def export_job_checkpoint(session: Session, settings: Settings, owner_id: str, job_id: str,
                          checkpoint_id: str | None, *, name: str | None = None,
                          merge_lora: bool = True,
                          before_commit: Callable[[Session], None] | None = None) -> ModelRecord:
    """Export checkpoint `checkpoint_id` (None: the newest) of `owner_id`'s job as a model; commits.

    404 for a job or checkpoint that is not theirs, 409 for a taken name or missing files, 422 for
    a malformed name or an export that cannot be done as asked (the message says what to change).
    """
    job = session.get(Job, job_id)
    if job is None or job.owner_id != owner_id:
        raise NotFound(f"no job {job_id!r}", "job_id")
    if checkpoint_id is None:
        newest = final_checkpoint(session, job)
        if newest is None:
            raise Conflict(f"job {job_id!r} has no checkpoint to export", "checkpoint_id")
        checkpoint_id = newest.id
    checkpoint, ckpt_dir = get_checkpoint(session, settings, job, checkpoint_id)
    source_ref = f"{job.id}/{checkpoint.id}"
    if name is None:
        earlier = session.scalar(select(ModelRecord).where(
            ModelRecord.source_ref == source_ref, ModelRecord.owner_id == owner_id,
            ModelRecord.name == default_name(job, checkpoint.step)))
        if earlier is not None:  # the default export of this checkpoint exists: the same answer
            return earlier
    name = catalog.check_name(name if name is not None else default_name(job, checkpoint.step), "name")
    if not name.startswith(catalog.EXPORT_PREFIX):
        raise Invalid(f"an exported model's name starts with {catalog.EXPORT_PREFIX!r} (e.g. "
                      f"'{catalog.EXPORT_PREFIX}my-model'): the rest of the model namespace is shared",
                      "name")
    try:
        kind = checkpoint_kind(ckpt_dir)
    except ExportError as exc:
        raise Conflict(f"checkpoint {checkpoint.id!r}: {exc}", "checkpoint_id") from None
    base = _base_dirs(session, settings, job) if kind == "lora" else None
    final = _check_free_name(session, settings, name)
    root = settings.model_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    _check_free(root, ckpt_dir / "model" if base is None else base.base or base.path)

    staging = root / f"{STAGING_PREFIX}{new_id('tmp')}"
    staging.mkdir()
    moved, new_parent = False, not final.parent.exists()
    try:
        try:
            fmt = export_checkpoint(ckpt_dir, staging, base=base, merge_lora=merge_lora,
                                    base_name=job.model)
        except MergeUnavailable as exc:
            raise Invalid(str(exc), "merge_lora") from None
        except ExportError as exc:
            raise Invalid(str(exc), "merge_lora" if str(exc).startswith("merge_lora") else "checkpoint_id") from None
        _carry_defaults(session, settings, job, staging)
        info = catalog.describe_model_dir(staging)
        record = ModelRecord(name=name, owner_id=owner_id, source="export", source_ref=source_ref,
                             base_model=job.model, format=fmt, path=name, bytes=info.bytes,
                             architecture=info.architecture, parameter_count=info.parameter_count,
                             chat_template=info.chat_template, job_id=job.id)
        session.add(record)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"a model named {name!r} already exists; choose another name", "name") from None
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise Conflict(f"a model named {name!r} already exists; choose another name", "name")
        os.replace(staging, final)
        moved = True
        if before_commit is not None:
            before_commit(session)
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(final if moved else staging, ignore_errors=True)
        if new_parent:
            try:
                final.parent.rmdir()  # only when empty: `ft/` made for this export alone
            except OSError:
                pass
        raise
    session.refresh(record)
    return record
