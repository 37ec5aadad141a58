"""Files on disk: atomic writes, and paths that can never leave the storage directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.services.errors import InsufficientStorage, NotFound
from core.services.health import free_mb
from core.settings import Settings


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the whole file or nothing: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def inside(root: Path, path: str | Path) -> Path:
    """`path` (relative to `root`, or absolute) resolved, refusing anything outside `root`."""
    root = root.resolve()
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root):
        raise NotFound("file is outside the storage directory")
    return resolved


def remove_tree(path: Path) -> str | None:
    """Remove the directory `path` and everything under it; None when done (or already gone),
    else what went wrong. Never raises: callers have committed the rows that pointed here."""
    problems: list[str] = []

    def record(_function, failed: str, exc_info) -> None:
        problems.append(f"{failed}: {exc_info[1]}")

    if path.is_symlink():
        return f"{path} is a symbolic link; not following it"
    if not path.exists():
        return None
    shutil.rmtree(path, onerror=record)
    return "; ".join(problems[:5]) or None


def require_free_space(settings: Settings, what: str) -> None:
    """507 when the storage volume has less than `min_free_disk_mb` free (checked before an upload
    or a job is accepted, so a full disk refuses new work instead of failing it half-way)."""
    free = free_mb(settings.storage_dir)
    if free < settings.min_free_disk_mb:
        raise InsufficientStorage(
            f"{what} refused: the server's storage has {free:.0f} MB free, below its floor of "
            f"{settings.min_free_disk_mb} MB; delete old jobs or datasets, or ask the administrator")
