"""One rank of a multi-process job, run by torchrun: `python -m worker.rank <launch dir> <job id>
<epoch>` (worker/distributed.py starts it and explains the whole scheme).

Rank 0 writes through a `DatabaseSink` and `JobRunner`'s callbacks fenced on the worker's lease
epoch; its stop check also reads the launch dir's stop file (the worker's warm shutdown). Other
ranks train with a `NullSink` and never touch the database. Any exception is recorded in
`error-rank<r>.json` for the worker before the rank exits.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from core.db import get_engine, is_transient
from core.jobs.lifecycle import LeaseLost
from core.settings import Settings
from worker.config import get_worker_settings
from worker.sink import DatabaseSink
from worker.tasks import JobRunner, describe_error

RESULT_FIELDS = ("steps", "stopped", "initial_eval_accuracy", "final_eval_accuracy", "seconds")


class _StopFile:
    """`threading.Event`'s `is_set` for the file the worker creates to stop the job."""

    def __init__(self, path: Path):
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


def _record_error(launch_dir: Path, rank: int, exc: BaseException) -> None:
    kind = "lease_lost" if isinstance(exc, LeaseLost) else "transient" if is_transient(exc) else "error"
    record = {"rank": rank, "ts": time.time(), "kind": kind, "error": describe_error(exc),
              "current": exc.current if isinstance(exc, LeaseLost) else None,
              "traceback": traceback.format_exc(limit=8)[-4000:]}
    (launch_dir / f"error-rank{rank}.json").write_text(json.dumps(record))


def run_rank(launch_dir: str | Path, job_id: str, epoch: int | str, *, train_fn=None) -> None:
    """Run this process's rank of job `job_id`; `train_fn` stands in for `trainer.loop.train`
    (same contract) in tests."""
    from trainer.config import TrainConfig
    from trainer.sinks import NullSink

    launch_dir, epoch, rank = Path(launch_dir), int(epoch), int(os.environ.get("RANK", "0"))
    if train_fn is None:
        from trainer.loop import train as train_fn
    try:
        config = TrainConfig.model_validate_json((launch_dir / "config.json").read_text())
        run_dir = Path(config.run_dir)
        if rank != 0:
            train_fn(config, NullSink(), run_dir=run_dir, resume=True)
            return
        result = _run_main_rank(config, run_dir, launch_dir, job_id, epoch, train_fn)
        (launch_dir / "result.json").write_text(
            json.dumps({key: getattr(result, key) for key in RESULT_FIELDS}))
    except BaseException as exc:
        _record_error(launch_dir, rank, exc)
        raise


def _run_main_rank(config, run_dir: Path, launch_dir: Path, job_id: str, epoch: int, train_fn):
    settings, ws = Settings(), get_worker_settings()
    engine = get_engine(settings.database_url)
    runner = JobRunner(job_id, epoch, engine, settings, ws, _StopFile(launch_dir / "stop"))
    sink = DatabaseSink(engine, job_id, epoch=epoch, retry_seconds=ws.db_retry_seconds)
    try:
        return train_fn(config, sink, run_dir=run_dir, should_stop=runner.should_stop,
                        on_status=runner.on_status, on_checkpoint=runner.on_checkpoint, resume=True,
                        before_checkpoint=runner.before_checkpoint)
    finally:
        sink.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {os.environ.get('RANK', '0')} "
                        "%(levelname)s %(name)s: %(message)s")
    run_rank(*sys.argv[1:4])
