"""Jobs of several processes: the worker runs the trainer's ranks under torch's elastic launcher.

A job with `num_processes = N > 1` is run by `Launcher`, which stands in for `trainer.loop.train`
in `JobRunner` (same signature, same result), so claim, heartbeat, status and release stay where
they are for every job. It starts `torch.distributed.run --standalone --nproc-per-node N -m
worker.rank <launch dir> <job id> <epoch>` (one rendezvous per job on a free port; gloo on
CPU, NCCL on GPU, chosen by the trainer), and each rank runs `worker.rank.run_rank`, which calls
`trainer.loop.train` (trainer/distributed.py: rollouts sharded, estimator on the gathered batch,
FSDP2 update).

Choices:
- Rank 0 is the job's only writer besides the worker: it gets a `DatabaseSink` and `JobRunner`'s
  callbacks (status, checkpoints, stop check) built on the worker's lease epoch, so every metric,
  event and checkpoint row is written once and fenced exactly as in a single-process job: after a
  takeover its next write raises `LeaseLost`. The other ranks get a `NullSink` and no database.
  The worker process keeps the job's heartbeat and writes the final status.
- Stopping: rank 0 reads the cancel flag before every step and the trainer broadcasts its answer,
  so all ranks stop at the same step. A user's cancel does not wait for that: the ranks cannot
  leave a step together mid-way (a sharded generation is a collective every token), so the worker,
  which polls the flag every `POLL_SECONDS`, kills the launch's process group (SIGTERM, SIGKILL
  after `CANCEL_GRACE_SECONDS`) and reports the job stopped at its last checkpoint: a cancel ends
  a multi-process job within seconds, mid-generation or mid-update, and what it loses is the
  work since that checkpoint, as a single-process cancel mid-step does. A warm shutdown of the worker reaches rank 0 through a stop
  file in the launch dir (the ranks run in their own session, so the terminal's or compose's
  SIGTERM does not kill them mid-step); the worker writes it when its own stop check fires.
- The ranks die with the worker: torchrun gets SIGTERM when the worker process dies (Linux
  `PR_SET_PDEATHSIG`) and stops its ranks, and a worker leaving `Launcher` for any reason kills the
  launch's process group. An orphan that escaped anyway is fenced by the lease.
- Failures: each rank records its exception (type, message, traceback, whether it was a lost
  lease or the database being away) in `error-rank<r>.json` before exiting; torchrun then stops
  the other ranks and exits non-zero. The worker raises the first recorded error: `RankFailed`
  (the job fails with that rank's message and traceback), `LeaseLost` (the job is another
  worker's), or a transient database error (the job stays resumable). A rank killed without a
  record (out of memory, a signal) fails the job with torchrun's exit status.
- The config goes to the ranks as JSON in the launch dir (`<run dir>/launch/`); the database URL
  and settings as `BASIS_*` environment variables, never on disk next to the run's files.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import OperationalError

from core.jobs.lifecycle import LeaseLost
from core.settings import Settings
from worker.config import WorkerSettings

log = logging.getLogger(__name__)

RANK_MODULE = "worker.rank"
POLL_SECONDS = 1.0
KILL_GRACE_SECONDS = 10.0
CANCEL_GRACE_SECONDS = 2.0


class RankFailed(Exception):
    """A rank of a multi-process job raised; the message is that rank's error."""

    def __init__(self, rank: int, error: str, rank_traceback: str):
        super().__init__(f"rank {rank}: {error}")
        self.rank, self.rank_traceback = rank, rank_traceback


def rank_env(settings: Settings, ws: WorkerSettings) -> dict[str, str]:
    """The environment of the ranks: this worker's, with the settings it was given made explicit
    (a worker built with settings objects, as in tests, may disagree with its environment)."""
    env = dict(os.environ)
    env.update({"BASIS_DATA_DIR": str(settings.data_dir), "BASIS_DATABASE_URL": settings.database_url,
                "BASIS_STORAGE_DIR": str(settings.storage_dir),
                "BASIS_MODEL_ROOTS": ",".join(map(str, settings.model_roots))})
    for name, value in ws.model_dump().items():
        if value is not None:
            env[f"BASIS_WORKER_{name.upper()}"] = str(value)
    return env


# Resolved here, not in the forked child: a child of a threaded process must not import anything.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the launch's child before exec: receive SIGTERM when the worker dies (Linux only)."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Launcher:
    """`train_fn` for a job of `config.num_processes` ranks (module docstring)."""

    def __init__(self, job_id: str, epoch: int, settings: Settings, worker_settings: WorkerSettings,
                 *, module: str | None = None, poll_seconds: float | None = None,
                 cancelled: Callable[[], bool] | None = None):
        self.job_id, self.epoch, self.settings, self.ws = job_id, epoch, settings, worker_settings
        self.module, self.poll_seconds = module or RANK_MODULE, poll_seconds or POLL_SECONDS
        self.cancelled = cancelled  # a user's cancel (vs a warm shutdown): kill, do not wait

    def argv(self, processes: int, launch_dir: Path) -> list[str]:
        from trainer.distributed import launch_command

        return launch_command(processes, [self.module, str(launch_dir), self.job_id, str(self.epoch)])

    def __call__(self, config: Any, sink: Any, *, run_dir: Path, should_stop, on_status,
                 on_checkpoint, resume: bool = True, before_checkpoint=None) -> SimpleNamespace:
        launch_dir = Path(run_dir) / "launch"
        launch_dir.mkdir(parents=True, exist_ok=True)
        for stale in launch_dir.iterdir():  # a previous attempt's result, errors or stop request
            stale.unlink()
        (launch_dir / "config.json").write_text(config.model_dump_json())
        argv = self.argv(config.num_processes, launch_dir)
        log.info("job %s: launching %d processes: %s", self.job_id, config.num_processes, " ".join(argv))
        process = subprocess.Popen(argv, env=rank_env(self.settings, self.ws), start_new_session=True,
                                   preexec_fn=_die_with_parent)
        try:
            while process.poll() is None:
                if should_stop():
                    if self.cancelled is not None and self.cancelled():
                        log.info("job %s: cancelled; stopping its ranks now", self.job_id)
                        _kill_group(process, CANCEL_GRACE_SECONDS)
                        return _stopped_at_last_checkpoint(Path(run_dir))
                    if not (launch_dir / "stop").exists():
                        log.info("job %s: asking its ranks to stop at the next step", self.job_id)
                        (launch_dir / "stop").touch()
                time.sleep(self.poll_seconds)
        finally:
            _kill_group(process)
        if process.returncode == 0:
            return SimpleNamespace(**json.loads((launch_dir / "result.json").read_text()))
        raise _rank_error(launch_dir, process.returncode, self.job_id, self.epoch)


def _stopped_at_last_checkpoint(run_dir: Path) -> SimpleNamespace:
    """The result of a launch killed for a cancel: stopped, at its newest checkpoint's step."""
    from trainer.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    steps = int(latest.name.removeprefix("step-")) if latest is not None else 0
    return SimpleNamespace(steps=steps, stopped=True, initial_eval_accuracy=None,
                           final_eval_accuracy=None, seconds=0.0)


def _kill_group(process: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    """Stop the launch (torchrun and its ranks) if it is still running."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _rank_error(launch_dir: Path, returncode: int, job_id: str, epoch: int) -> Exception:
    """The exception the worker raises for a failed launch: the first error a rank recorded."""
    records = [json.loads(p.read_text()) for p in sorted(launch_dir.glob("error-rank*.json"))]
    if not records:
        return RuntimeError(f"the job's processes exited with status {returncode} without "
                            "reporting an error (killed by a signal, or out of memory?)")
    first = min(records, key=lambda r: r["ts"])
    if first["kind"] == "lease_lost":
        return LeaseLost(job_id, epoch, first.get("current"))
    if first["kind"] == "transient":
        return OperationalError(f"rank {first['rank']}", None, Exception(first["error"]))
    return RankFailed(first["rank"], first["error"], first["traceback"])
