"""A job stopped by a warm shutdown is requeued with one info line in the worker's log, not
Celery's "rejected" warning with a traceback; any other Reject or error keeps its traceback.

Runs the real task through Celery's tracer (`apply`, the code path a worker runs) and reads the
records Celery logs."""

from __future__ import annotations

import logging
import pickle

import pytest
from celery import Celery
from celery.exceptions import Reject

from worker.celery_app import ShutdownRequeue, shutting_down
from worker.tasks import run_job

TRACE = "celery.app.trace"


@pytest.fixture
def trace_log(caplog):
    caplog.set_level(logging.INFO, logger=TRACE)
    return lambda: [r for r in caplog.records if r.name == TRACE]


def test_a_job_stopped_by_shutdown_is_one_info_line(trace_log):
    shutting_down.set()
    try:
        result = run_job.apply(args=["job_stopped"])
    finally:
        shutting_down.clear()
    assert result.state == "REJECTED"  # still handed back to the broker, requeued
    [record] = trace_log()
    line = record.getMessage()
    assert record.levelno == logging.INFO and record.exc_info is None and "\n" not in line
    assert "job_stopped" in line and "requeued" in line
    assert "Traceback" not in logging.Formatter().format(record)


def test_other_rejects_and_errors_keep_their_traceback(trace_log):
    app = Celery("shutdown-log-test", broker="memory://")

    @app.task(name="test.rejects")
    def rejects():
        raise Reject("not a shutdown", requeue=True)

    @app.task(name="test.fails")
    def fails():
        raise RuntimeError("a real bug")

    rejects.apply()
    fails.apply()
    reject_record, error_record = trace_log()
    assert reject_record.levelno == logging.WARNING and reject_record.exc_info is not None
    assert error_record.levelno == logging.ERROR and error_record.exc_info is not None
    assert "a real bug" in logging.Formatter().format(error_record)


def test_shutdown_requeue_survives_the_trip_to_the_pool_parent():
    copy = pickle.loads(pickle.dumps(ShutdownRequeue("job_1")))
    assert (copy.job_id, copy.requeue, copy.reason) == ("job_1", True, "job job_1 interrupted by shutdown")
