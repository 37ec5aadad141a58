"""Models pulled from a Hugging Face hub into the first models root, with a `model_records` row.

Choices:
- Safetensors only, by an allow-list: root-level `*.safetensors` weights and the small files a
  model needs (`*.json` configs and tokenizers, `*.txt` merges, `*.jinja` chat templates,
  sentencepiece `*.model`, `*.tiktoken`). Pickle formats (`.bin`, `.pt`, `.pth`, `.ckpt`, `.pkl`)
  and subfolders are never requested, so a repo holding only `pytorch_model.bin` is refused before
  a byte is downloaded. Each weights file's header is parsed after the download
  (`catalog.describe_model_dir`, which also counts the parameters without loading a tensor), so a
  file that is not safetensors is refused too.
- The revision (branch, tag or sha) is resolved to its commit first (`model_info`) and every file
  is fetched at that commit: the record names exactly what is on disk even if the branch moves.
- The size limit (`BASIS_MODEL_MAX_BYTES`) and the free-space floor are checked against the hub's
  file listing at that commit, before anything is downloaded.
- Files land in `<root>/.pulls/<pull id>/` (hidden, so the catalog never lists it; same filesystem,
  so the final rename is atomic) and are renamed to `<root>/<name>` only once complete and checked;
  the record is committed after the rename and the directory removed if that commit fails. On any
  failure the staging directory is removed: no partial directory, no record. A process killed
  mid-pull leaves its staging directory, removed by `clean_stale_staging` at the next start.
- `HF_ENDPOINT` and `HF_TOKEN` are read at call time (huggingface_hub reads HF_ENDPOINT once, at its
  import), so a server's environment decides where it pulls from and with which token.
- `ModelPulls` runs a pull's download in a background thread of the process that accepted it and
  reports its progress (bytes on disk in the staging directory against the listing's total), so
  the API answers `POST /v1/models` at once (202) and keeps answering while gigabytes arrive.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.models import ModelRecord, new_id, utcnow
from core.services.catalog import (
    EXPORT_PREFIX,
    NAME_RE,
    check_name,
    describe_model_dir,
    scan_models,
)
from core.services.errors import (
    Conflict,
    DomainError,
    InsufficientStorage,
    Invalid,
    QuotaExceeded,
    TooLarge,
    Upstream,
)
from core.settings import Settings

log = logging.getLogger(__name__)

STAGING = ".pulls"  # under the first models root; the catalog skips dot directories
WEIGHTS = "*.safetensors"
ALLOWED = (WEIGHTS, "*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken")
REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


def parse_ref(ref: str, revision: str | None = None) -> tuple[str, str | None]:
    """`ORG/NAME@REV` -> (`ORG/NAME`, `REV`); an explicit `revision` wins over the `@` part."""
    repo_id, _, at = ref.strip().partition("@")
    return repo_id, revision or at or None


def _check_ref(repo_id: str, revision: str | None) -> None:
    if not NAME_RE.fullmatch(repo_id) or ".." in repo_id.split("/"):
        raise Invalid(f"repo_id {repo_id!r} is not a hub repo id (ORG/NAME)", "repo_id")
    if revision is not None and (not REVISION_RE.fullmatch(revision) or ".." in revision):
        raise Invalid(f"revision {revision!r} is not a branch, tag or commit", "revision")


def _check_name(settings: Settings, session: Session, name: str) -> None:
    """422 for a malformed name; 409 when a record (anyone's), a model directory or any file
    already has it."""
    check_name(name, "name")
    if name.startswith(EXPORT_PREFIX):
        raise Invalid(f"names under {EXPORT_PREFIX!r} are reserved for users' exported models; "
                      "pick another name (name)", "name")
    taken = (session.scalar(select(ModelRecord.id).where(ModelRecord.name == name)) is not None
             or name in scan_models(settings) or (settings.model_roots[0] / name).exists())
    if taken:
        raise Conflict(f"a model named {name!r} already exists; pick another name (name) or delete it",
                       "name")


def hub_connection() -> tuple[str | None, str | None]:
    """(endpoint, token) from `HF_ENDPOINT` and `HF_TOKEN`, read now (None: huggingface_hub's own
    default, https://huggingface.co, and the token `hf auth login` saved for this user, if any)."""
    return os.environ.get("HF_ENDPOINT") or None, os.environ.get("HF_TOKEN") or None


@dataclass(frozen=True)
class PullPlan:
    """What a pull will fetch, decided before any download."""

    repo_id: str
    requested: str | None  # the revision as asked (None: the default branch)
    commit: str  # what it resolved to; every file is fetched at this commit
    name: str
    files: dict[str, int]  # file -> size in bytes

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def _hub_error(exc: Exception, repo_id: str, revision: str | None, endpoint: str | None) -> DomainError:
    """huggingface_hub's exception as a domain error naming the field at fault."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = endpoint or "the Hugging Face hub"
    if isinstance(exc, RevisionNotFoundError):
        return Invalid(f"hub repo {repo_id!r} has no revision {revision!r}", "revision")
    if isinstance(exc, GatedRepoError):
        return Invalid(f"hub repo {repo_id!r} is gated: accept its terms and set HF_TOKEN on the "
                       "server to a token with access", "repo_id")
    if isinstance(exc, RepositoryNotFoundError) or (
            isinstance(exc, HfHubHTTPError) and exc.response is not None
            and exc.response.status_code in (401, 403)):
        return Invalid(f"no hub repo {repo_id!r} at {where} (or it is private and HF_TOKEN on the "
                       "server has no access)", "repo_id")
    first_line = (str(exc).splitlines() or [""])[0][:300]
    return Upstream(f"the hub at {where} failed: {type(exc).__name__}: {first_line}")


def _selected(files: dict[str, int]) -> dict[str, int]:
    return {name: size for name, size in files.items()
            if "/" not in name and any(fnmatch(name, pattern) for pattern in ALLOWED)}


def plan_pull(settings: Settings, session: Session, repo_id: str, revision: str | None = None,
              name: str | None = None) -> PullPlan:
    """Resolve the revision and list the files to fetch; refuse (before any download) a bad
    ref or name, a repo without safetensors or config.json, one over the size limit or the free
    space. Network errors are `Upstream` (502)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    _check_ref(repo_id, revision)
    name = name or repo_id
    _check_name(settings, session, name)
    endpoint, token = hub_connection()
    api = HfApi(endpoint=endpoint, token=token)
    try:
        commit = api.model_info(repo_id, revision=revision).sha
        if not commit:
            raise Upstream(f"the hub did not say which commit {revision or 'main'!r} of {repo_id!r} is")
        listing = {f.path: int(f.size or 0) for f in api.list_repo_tree(repo_id, revision=commit, recursive=True)
                   if isinstance(f, RepoFile)}
    except DomainError:
        raise
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes a domain error
        raise _hub_error(exc, repo_id, revision, endpoint) from exc
    files = _selected(listing)
    if not any(fnmatch(f, WEIGHTS) for f in files):
        found = ", ".join(sorted(listing)[:8]) or "no files"
        raise Invalid(f"hub repo {repo_id!r} has no *.safetensors weights at its root (it has {found}); "
                      "only safetensors are pulled, never pickled .bin/.pt weights", "repo_id")
    if "config.json" not in files:
        raise Invalid(f"hub repo {repo_id!r} has no config.json: not a transformers model", "repo_id")
    plan = PullPlan(repo_id=repo_id, requested=revision, commit=commit, name=name, files=files)
    if plan.total_bytes > settings.model_max_bytes:
        raise TooLarge(f"hub repo {repo_id!r} is {plan.total_bytes / 2**30:.2f} GiB, over this server's "
                       f"limit of {settings.model_max_bytes / 2**30:.2f} GiB (BASIS_MODEL_MAX_BYTES)", "repo_id")
    root = settings.model_roots[0]
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free - plan.total_bytes < settings.min_free_disk_mb * 2**20:
        raise InsufficientStorage(
            f"hub repo {repo_id!r} needs {plan.total_bytes / 2**20:.0f} MB; the models volume has "
            f"{free / 2**20:.0f} MB free and keeps {settings.min_free_disk_mb} MB spare")
    return plan


def staging_dir(settings: Settings, pull_id: str) -> Path:
    return settings.model_roots[0] / STAGING / pull_id


def download(plan: PullPlan, staging: Path, tqdm_class: Any = None) -> Path:
    """Fetch the plan's files at its commit into `staging/model`; returns that directory."""
    from huggingface_hub import snapshot_download

    endpoint, token = hub_connection()
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    target = staging / "model"
    try:
        snapshot_download(plan.repo_id, revision=plan.commit, local_dir=target, endpoint=endpoint,
                          token=token, allow_patterns=sorted(plan.files),
                          tqdm_class=tqdm_class or _quiet_tqdm(), max_workers=4)
    except Exception as exc:  # noqa: BLE001 - every hub failure becomes a domain error
        raise _hub_error(exc, plan.repo_id, plan.requested, endpoint) from exc
    shutil.rmtree(target / ".cache", ignore_errors=True)  # huggingface_hub's local_dir bookkeeping
    missing = [f for f, size in plan.files.items()
               if not (target / f).is_file() or (target / f).stat().st_size != size]
    if missing:
        raise Upstream(f"the hub sent incomplete files for {plan.repo_id!r}: {', '.join(missing[:5])}")
    return target


def _quiet_tqdm() -> Any:
    """huggingface_hub's progress bar, always disabled: a server process stays quiet (progress is
    polled from the staging directory instead)."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Quiet(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    return Quiet


def install(settings: Settings, session: Session, plan: PullPlan, staged: Path) -> ModelRecord:
    """Move the checked download to `<root>/<name>` and commit its record, both or neither."""
    facts = describe_model_dir(staged)
    if facts.parameter_count is None:
        raise Invalid(f"hub repo {plan.repo_id!r} sent weights that are not valid safetensors "
                      "(a header could not be read)", "repo_id")
    _check_name(settings, session, plan.name)
    target = settings.model_roots[0] / plan.name
    record = ModelRecord(name=plan.name, owner_id=None, source="hub", source_ref=plan.repo_id,
                         revision=plan.commit, format="full", path=plan.name, bytes=facts.bytes,
                         architecture=facts.architecture, parameter_count=facts.parameter_count,
                         chat_template=facts.chat_template)
    session.add(record)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(f"a model named {plan.name!r} already exists", "name") from exc
    created_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    moved = False
    try:
        os.rename(staged, target)
        moved = True
        session.commit()
    except BaseException:
        session.rollback()
        if moved:
            shutil.rmtree(target, ignore_errors=True)
        if created_parent and target.parent != settings.model_roots[0]:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return record


def pull_model(settings: Settings, session: Session, repo_id: str, revision: str | None = None,
               name: str | None = None, tqdm_class: Any = None) -> ModelRecord:
    """Pull in this thread: plan, download, install; nothing left behind on failure."""
    plan = plan_pull(settings, session, repo_id, revision, name)
    staging = staging_dir(settings, new_id("pull"))
    try:
        return install(settings, session, plan, download(plan, staging, tqdm_class))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(settings: Settings, *, other_host_after: float = 24 * 3600.0) -> list[Path]:
    """Remove the staging directories of pulls whose process is gone; returns them. Called once at
    an API start, before this process pulls anything, so a directory naming this process's pid is
    a previous process's (a container restarts as pid 1). Another host's directory (a recreated
    container has a new hostname) is removed once it is `other_host_after` seconds old."""
    import time

    removed: list[Path] = []
    parent = settings.model_roots[0] / STAGING
    if not parent.is_dir():
        return removed
    host = socket.gethostname()
    for staging in parent.iterdir():
        try:
            owner_host, pid = (staging / "owner").read_text().split()
            if owner_host == host:
                stale = int(pid) == os.getpid() or not _pid_alive(int(pid))
            else:
                stale = time.time() - (staging / "owner").stat().st_mtime > other_host_after
        except (OSError, ValueError):
            stale = True  # no owner written yet or unreadable: a pull that died at its start
        if stale:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


@dataclass
class Pull:
    """One pull's state, as `GET /v1/models/pulls/{id}` shows it."""

    id: str
    plan: PullPlan
    status: Literal["downloading", "succeeded", "failed"] = "downloading"
    error: dict[str, Any] | None = None
    record: ModelRecord | None = None
    created_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    staging: Path | None = None

    def bytes_done(self) -> int:
        if self.status == "succeeded":
            return self.plan.total_bytes
        if self.staging is None or not self.staging.is_dir():
            return 0
        done = 0
        for path in self.staging.rglob("*"):
            try:
                done += path.stat().st_size if path.is_file() else 0
            except OSError:  # renamed or removed while we walked
                pass
        return min(done, self.plan.total_bytes)


class ModelPulls:
    """Pulls running in background threads of this process, and the last `keep` finished ones."""

    def __init__(self, settings: Settings, sessionmaker: Callable[[], Session], *,
                 max_active: int = 2, keep: int = 100):
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.max_active = max_active
        self.keep = keep
        self._pulls: dict[str, Pull] = {}
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}

    def clean(self) -> None:
        """At process start: remove what pulls of a killed process left (never raises)."""
        try:
            for path in clean_stale_staging(self.settings):
                log.warning("removed the staging directory of an interrupted pull: %s", path)
        except OSError as exc:  # a read-only models root: pulls will say so when one is asked for
            log.warning("cannot clean the models root's staging directories: %s", exc)

    def start(self, repo_id: str, revision: str | None = None, name: str | None = None) -> Pull:
        """Check and plan now (a bad ref, no safetensors, too big: raised here), download later."""
        repo_id, revision = parse_ref(repo_id, revision)
        with self.sessionmaker() as session:
            plan = plan_pull(self.settings, session, repo_id, revision, name)
        with self._lock:
            active = [p for p in self._pulls.values() if p.status == "downloading"]
            if any(p.plan.name == plan.name for p in active):
                raise Conflict(f"model {plan.name!r} is already being pulled", "name")
            if len(active) >= self.max_active:
                raise QuotaExceeded(f"{len(active)} pulls are running, the most this server runs at "
                                    "once; retry when one finishes")
            pull = Pull(id=new_id("pull"), plan=plan)
            pull.staging = staging_dir(self.settings, pull.id)
            self._pulls[pull.id] = pull
            self._forget_old()
        thread = threading.Thread(target=self._run, args=(pull,), name=f"pull-{pull.id}", daemon=True)
        self._threads[pull.id] = thread
        thread.start()
        return pull

    def get(self, pull_id: str) -> Pull | None:
        with self._lock:
            return self._pulls.get(pull_id)

    def list(self) -> list[Pull]:
        """Running and recently finished pulls, newest first."""
        with self._lock:
            return sorted(self._pulls.values(), key=lambda p: p.id, reverse=True)

    def wait(self, pull_id: str, timeout: float | None = None) -> Pull | None:
        """Block until the pull's thread ends (tests, and the CLI on the server host)."""
        thread = self._threads.get(pull_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(pull_id)

    def _run(self, pull: Pull) -> None:
        assert pull.staging is not None
        try:
            staged = download(pull.plan, pull.staging)
            with self.sessionmaker() as session:
                pull.record = install(self.settings, session, pull.plan, staged)
                session.expunge(pull.record)
            pull.status = "succeeded"
        except DomainError as exc:
            pull.error = {"code": exc.code, "message": exc.message, "param": exc.param}
            pull.status = "failed"
        except Exception as exc:  # noqa: BLE001 - a failed pull is a state, not a crashed thread
            log.exception("pull %s of %s failed", pull.id, pull.plan.repo_id)
            pull.error = {"code": "internal_error", "param": None,
                          "message": f"the pull failed: {type(exc).__name__}: {str(exc)[:300]}"}
            pull.status = "failed"
        finally:
            shutil.rmtree(pull.staging, ignore_errors=True)
            pull.finished_at = utcnow()
            self._threads.pop(pull.id, None)

    def _forget_old(self) -> None:
        finished = [p for p in self._pulls.values() if p.status != "downloading"]
        for pull in finished[:max(0, len(self._pulls) - self.keep)]:
            del self._pulls[pull.id]

