"""`core.workers.check_capacity` on both databases: process counts and vLLM tensor parallelism
against the live workers of a queue (the API tests cover engine, queue and the no-worker policy)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from core import workers
from core.db import make_engine
from core.services.errors import Invalid


@pytest.fixture
def session(settings):
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        for worker_id, gpus, slots, engines in (("gpu-1@a", 4, 4, ["hf", "vllm"]),
                                                 ("gpu-2@b", 0, 8, ["hf"])):
            workers.beat(conn, workers.WorkerInfo(id=worker_id, hostname="h", pid=1, queues=["gpu"],
                                                  engines=engines, gpus=gpus, max_processes=slots))
    with Session(engine) as session:
        yield session
    engine.dispose()


@pytest.mark.parametrize(("need", "param"), [
    (workers.Requirement("gpu", "hf", processes=9), "config.num_processes"),
    (workers.Requirement("gpu", "vllm", processes=4, tensor_parallel_size=8),
     "config.engine_options.tensor_parallel_size"),
])
def test_more_than_any_live_worker_offers_is_refused(session, settings, need, param):
    with pytest.raises(Invalid) as info:
        workers.check_capacity(session, settings, need)
    assert info.value.param == param and "gpu-" in info.value.message


@pytest.mark.parametrize("need", [
    workers.Requirement("gpu", "hf", processes=8),  # the CPU worker's 8 slots
    workers.Requirement("gpu", "vllm", processes=4, tensor_parallel_size=4),
])
def test_what_one_live_worker_offers_is_accepted(session, settings, need):
    assert workers.check_capacity(session, settings, need) is None


def test_the_process_count_is_checked_among_workers_with_the_engine(session, settings):
    """gpu-2's 8 slots do not count for vllm, which only gpu-1 (4) has."""
    with pytest.raises(Invalid, match="at most 4"):
        workers.check_capacity(session, settings, workers.Requirement("gpu", "vllm", processes=5))
