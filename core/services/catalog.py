"""The models a user can use: HF directories under the model roots, and the platform's model records.

Two sources make one catalogue:
- The directory scan: every directory holding config.json under a model root, named by its path
  relative to the root (`tiny` or `Qwen/Qwen2.5-0.5B`, at most two levels deep, like the hub).
  These are shared (someone copied them in by hand) and have no row; earlier roots win.
- `model_records` rows (core/models.py): models the platform put into the first root, pulled from a
  hub (`owner_id` NULL: shared) or exported from a job's checkpoint (owned by the job's owner). A
  record governs its name: the scan never lists a directory a record names or points at, so an
  export is visible to its owner only, and another owner's export is 404 exactly like an unknown
  name (`NotFound`, same message and param).

Names are only ever looked up in this listing, never joined to a path from user input, so `../etc`
or `/abs/path` cannot reach a directory outside the roots. A record's `path` is written by the
server and still resolved with `inside` (it can never leave the first root).

A model of format "adapter" is a PEFT adapter directory (adapter weights, the base's config.json and
tokenizer) whose `base_model` names another model of the catalogue: resolving it gives both
directories (`ResolvedModel.base`), and the trainer loads the base with the adapter merged in.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from math import prod
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session

from core.jobs.events import record_event
from core.models import Job, ModelRecord, User
from core.services.errors import Conflict, Forbidden, Invalid, NotFound
from core.services.storage import inside, remove_tree
from core.settings import Settings
from core.status import ACTIVE

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on a header


@dataclass(frozen=True)
class ModelInfo:
    """What a model directory says about itself, read without loading weights (None: unknown)."""

    bytes: int
    architecture: str | None
    parameter_count: int | None
    chat_template: bool


@dataclass(frozen=True)
class CatalogModel:
    """One model a user can see: its directory, where it came from, and its record if it has one."""

    name: str
    path: Path
    source: str  # "local" (hand-copied, no record) | "hub" | "export"
    record: ModelRecord | None
    owned: bool  # the caller owns it (an export of theirs)

    @property
    def format(self) -> str:
        return self.record.format if self.record is not None else "full"


@dataclass(frozen=True)
class ResolvedModel:
    """The directories a job loads: `path`, and `base` when `path` is a PEFT adapter."""

    path: Path
    base: Path | None = None


# Users' exports live under this prefix and nothing else does: a user's chosen export name can never
# take a name of the shared namespace (a hub model an admin will pull, `tiny-arith` before
# `basis up --demo` builds it), and an admin's pull can never take a name an export will want.
EXPORT_PREFIX = "ft/"


def check_name(name: object, param: str = "model") -> str:
    """`name` if it is a well-formed model name; Invalid naming `param` otherwise."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name.split("/"):
        raise Invalid(f"{param} must be a model name like 'tiny' or 'org/name' (letters, digits, "
                      "'.', '_', '-', one '/'), not a path", param)
    return name


def _is_model(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def scan_models(settings: Settings) -> dict[str, Path]:
    """Every model directory under the roots, name -> directory, sorted by name (records or not)."""
    found: dict[str, Path] = {}
    for root in settings.model_roots:
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name.startswith("."):
                continue
            if _is_model(child):
                found.setdefault(child.name, child)
            elif child.is_dir():
                for grandchild in sorted(child.iterdir()):
                    if not grandchild.name.startswith(".") and _is_model(grandchild):
                        found.setdefault(f"{child.name}/{grandchild.name}", grandchild)
    return dict(sorted(found.items()))


def record_dir(settings: Settings, record: ModelRecord) -> Path:
    """The directory of a record: its `path` under the first models root, never outside it."""
    return inside(settings.model_roots[0], record.path)


def _visible(owner_id: str) -> Any:
    return or_(ModelRecord.owner_id.is_(None), ModelRecord.owner_id == owner_id)


def _claimed_dirs(session: Session, settings: Settings) -> set[Path]:
    """Directories some record points at (whoever owns it): never listed by the scan."""
    return {inside(settings.model_roots[0], path) for path in session.scalars(select(ModelRecord.path))}


def list_models(session: Session, settings: Settings, owner_id: str) -> list[CatalogModel]:
    """Every model `owner_id` can use, sorted by name: shared scans and records, and their exports."""
    records = list(session.scalars(select(ModelRecord)))
    claimed_names = {r.name for r in records}
    claimed_dirs = {record_dir(settings, r) for r in records}  # resolved, like scan paths below
    models = {name: CatalogModel(name, path, "local", None, False)
              for name, path in scan_models(settings).items()
              if name not in claimed_names and path.resolve() not in claimed_dirs}
    for r in records:
        if r.owner_id is None or r.owner_id == owner_id:
            models[r.name] = CatalogModel(r.name, record_dir(settings, r), r.source, r,
                                          r.owner_id is not None)
    return [models[name] for name in sorted(models)]


def get_model(session: Session, settings: Settings, owner_id: str, name: str,
              param: str = "model") -> CatalogModel:
    """Model `name` as `owner_id` sees it; 422 for a malformed name, 404 for an unknown one or one
    owned by someone else (the same answer)."""
    check_name(name, param)
    record = session.scalar(select(ModelRecord).where(ModelRecord.name == name))
    if record is not None:
        if record.owner_id is None or record.owner_id == owner_id:
            return CatalogModel(name, record_dir(settings, record), record.source, record,
                                record.owner_id is not None)
        raise _unknown(name, param)
    path = scan_models(settings).get(name)
    if path is None or path.resolve() in _claimed_dirs(session, settings):
        raise _unknown(name, param)
    return CatalogModel(name, path, "local", None, False)


def _unknown(name: str, param: str) -> NotFound:
    return NotFound(f"no model {name!r}; GET /v1/models lists the available ones", param)


def resolve_model(session: Session, settings: Settings, owner_id: str, name: str) -> ResolvedModel:
    """The directories of model `name` for a job of `owner_id` (422 malformed, 404 unknown or not
    theirs, 409 for an adapter whose base model is gone)."""
    model = get_model(session, settings, owner_id, name)
    if model.format != "adapter":
        return ResolvedModel(model.path)
    base_name = model.record.base_model if model.record is not None else None
    try:
        base = get_model(session, settings, owner_id, base_name or "", "model")
    except (NotFound, Invalid):
        raise Conflict(f"model {name!r} is an adapter of {base_name!r}, which is no longer "
                       "available; export the job again with merge_lora, or restore the base",
                       "model") from None
    if base.format == "adapter":
        raise Conflict(f"model {name!r} is an adapter of another adapter ({base_name!r})", "model")
    return ResolvedModel(model.path, base.path)


# -------------------------------------------------------------------------------- describe


def safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in a safetensors file, from its JSON header alone (8-byte
    little-endian length, then the header); ValueError if the file is not safetensors."""
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path.name} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        if not 2 <= length <= MAX_HEADER_BYTES:
            raise ValueError(f"{path.name} is not a safetensors file (header length {length})")
        try:
            header = json.loads(f.read(length))
        except ValueError as exc:
            raise ValueError(f"{path.name} is not a safetensors file (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} is not a safetensors file (header is not an object)")
    return sum(prod(int(d) for d in entry["shape"]) for key, entry in header.items()
               if key != "__metadata__" and isinstance(entry, dict))



def describe_model_dir(path: Path) -> ModelInfo:
    """Size, architecture, parameter count and chat template of a model directory, read from its
    config, tokenizer config and safetensors headers (never the weights). For an adapter the
    count is the adapter's own parameters."""
    size = 0
    for dirpath, _dirs, files in os.walk(path):
        for file in files:
            try:
                size += os.lstat(os.path.join(dirpath, file)).st_size
            except OSError:
                pass
    architecture = None
    try:
        config = json.loads((path / "config.json").read_text())
        architectures = config.get("architectures") if isinstance(config, dict) else None
        if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
            architecture = architectures[0][:128]
        elif isinstance(config, dict) and isinstance(config.get("model_type"), str):
            architecture = config["model_type"][:128]
    except (OSError, ValueError):
        pass
    try:
        weights = sorted(path.glob("*.safetensors"))
        parameters: int | None = sum(safetensors_parameters(f) for f in weights) if weights else None
    except (OSError, KeyError, TypeError, ValueError):  # not ours to judge here: unknown
        parameters = None
    chat_template = (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file()
    if not chat_template:
        try:
            tokenizer_config = json.loads((path / "tokenizer_config.json").read_text())
            chat_template = isinstance(tokenizer_config, dict) and bool(tokenizer_config.get("chat_template"))
        except (OSError, ValueError):
            pass
    return ModelInfo(size, architecture, parameters, chat_template)


def model_details(model: CatalogModel) -> dict[str, Any]:
    """The fields `GET /v1/models` shows for one model (a record's stored values, else read now)."""
    r = model.record
    if r is not None:
        return {"id": model.name, "name": model.name, "source": model.source, "owned": model.owned,
                "owned_by": "you" if model.owned else "platform", "revision": r.revision,
                "bytes": r.bytes, "architecture": r.architecture,
                "parameter_count": r.parameter_count, "chat_template": r.chat_template,
                "base_model": r.base_model, "format": r.format, "job_id": r.job_id,
                "created_at": r.created_at}
    info = describe_model_dir(model.path)
    return {"id": model.name, "name": model.name, "source": "local", "owned": False,
            "owned_by": "platform", "revision": None, "bytes": info.bytes,
            "architecture": info.architecture, "parameter_count": info.parameter_count,
            "chat_template": info.chat_template, "base_model": None, "format": "full",
            "job_id": None, "created_at": _mtime(model.path)}


def _mtime(path: Path) -> datetime | None:
    from datetime import UTC

    try:
        return datetime.fromtimestamp((path / "config.json").stat().st_mtime, UTC)
    except OSError:
        return None


# -------------------------------------------------------------------------------- delete


def models_using(session: Session, name: str) -> list[str]:
    """Ids of the queued or running jobs and evals (any owner) whose model is `name`."""
    return list(session.scalars(select(Job.id).where(
        Job.model == name, Job.status.in_([str(s) for s in ACTIVE])).limit(5)))


def delete_model(session: Session, settings: Settings, user: User, name: str) -> None:
    """Delete a model record and its directory together; commits.

    The owner deletes their export, an admin a shared (hub) record. A hand-copied directory has no
    record and is not the API's to delete (403); another owner's export is 404 like an unknown name.
    409 while a queued or running job or eval uses it, or while an adapter model is based on it.

    Nothing half-deleted: the directory is first renamed to a hidden name in its root (atomic, and
    the scan skips hidden names), the row deleted and committed, and only then the hidden
    directory removed. A failed commit renames it back; a failed removal leaves a hidden orphan
    nothing points to.

    The jobs that produced it (`fine_tuned_model == name`) get `fine_tuned_model` cleared and a
    `model_deleted` event naming it, in the same transaction: a job never names a model that is
    gone (a later model may even take the name), and its events still say what it produced.
    """
    model = get_model(session, settings, user.id, name, "name")
    record = model.record
    if record is None:
        raise Forbidden(f"model {name!r} was copied into the models root by hand; remove its "
                        "directory on the server instead", "name")
    if record.owner_id is None and not user.is_admin:
        raise Forbidden(f"model {name!r} is shared; only an admin can delete it", "name")
    if using := models_using(session, name):
        raise Conflict(f"model {name!r} is used by queued or running work ({', '.join(using)}); "
                       "cancel it or wait for it to finish, then delete the model", "name")
    if session.scalar(select(ModelRecord.id).where(ModelRecord.base_model == name,
                                                   ModelRecord.format == "adapter").limit(1)):
        raise Conflict(f"model {name!r} is the base of an adapter model; delete that first", "name")
    directory = record_dir(settings, record)
    trash = directory.parent / f".deleting-{record.id}"
    moved = directory.is_dir()
    if moved:
        os.replace(directory, trash)
    try:
        deleted = cast(CursorResult[Any], session.execute(
            delete(ModelRecord).where(ModelRecord.id == record.id)
            .execution_options(synchronize_session=False))).rowcount
        if deleted != 1:
            raise Conflict(f"model {name!r} changed while being deleted; read it again", "name")
        _forget_fine_tuned_model(session, name)
        session.commit()
    except BaseException:
        session.rollback()
        if moved:
            os.replace(trash, directory)
        raise
    if moved:
        remove_tree(trash)


def _forget_fine_tuned_model(session: Session, name: str) -> None:
    """Clear `name` from the jobs that produced it, each with a `model_deleted` event (not committed)."""
    jobs = list(session.scalars(update(Job).where(Job.fine_tuned_model == name)
                                .values(fine_tuned_model=None).returning(Job.id)
                                .execution_options(synchronize_session=False)))
    for job_id in jobs:
        record_event(session, job_id, "model_deleted",
                     f"the fine-tuned model {name} was deleted", {"fine_tuned_model": name})
