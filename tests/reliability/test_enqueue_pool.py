"""`core.queue.enqueue_job` borrows a pooled broker connection instead of opening one per send,
and the pool survives what a long-lived sender meets: a broker restart (issue 8), a fork, threads.

Connections are counted by the broker itself (Redis `total_connections_received` of a redis-server
the test owns) or, for the embedded SQLite broker, by kombu's transport as it establishes them.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from ast import literal_eval

import pytest
from kombu import Connection
from kombu.transport.sqlalchemy import Transport as SqlaTransport

from core.queue import enqueue_job
from core.settings import Settings


def _connections(probe) -> int:
    """Connections the server has accepted so far (`probe`, one kept-open client, counts once)."""
    return int(probe.info("stats")["total_connections_received"])


def _job_ids(probe, queue: str) -> list[str]:
    return sorted(literal_eval(json.loads(raw)["headers"]["argsrepr"])[0]
                  for raw in probe.lrange(queue, 0, -1))


def test_sends_on_redis_share_one_connection_and_survive_a_restart(owned_redis):
    settings = Settings(broker_url=owned_redis.url)
    queue = f"pool-{uuid.uuid4().hex[:8]}"
    probe = owned_redis.client()
    enqueue_job("job_1", queue, settings=settings)
    before = _connections(probe)
    for i in range(2, 6):
        enqueue_job(f"job_{i}", queue, settings=settings)
    assert _connections(probe) == before  # a connection per send would add 4
    assert _job_ids(probe, queue) == [f"job_{i}" for i in range(1, 6)]

    owned_redis.restart()  # the pooled connection is now dead; the next send must reconnect
    enqueue_job("job_after_restart", queue, settings=settings)
    assert _job_ids(owned_redis.client(), queue) == ["job_after_restart"]


def test_threads_share_the_pool_and_a_forked_child_opens_its_own(owned_redis):
    settings = Settings(broker_url=owned_redis.url)
    queue = f"pool-{uuid.uuid4().hex[:8]}"
    probe = owned_redis.client()
    enqueue_job("job_parent", queue, settings=settings)
    threads = [threading.Thread(target=enqueue_job, args=(f"job_t{i}", queue),
                                kwargs={"settings": settings}) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_job_ids(probe, queue)) == 9

    before = _connections(probe)
    pid = os.fork()
    if pid == 0:  # the child: must not write on the parent's socket
        try:
            enqueue_job("job_child", queue, settings=settings)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    enqueue_job("job_parent_again", queue, settings=settings)  # the parent's pool still works
    ids = _job_ids(probe, queue)
    assert "job_child" in ids and "job_parent_again" in ids and len(ids) == 11
    # The child connected once (its own pool); the parent kept using its pooled connections.
    assert _connections(probe) - before == 1


def test_sends_on_the_embedded_sqlite_broker_reuse_one_connection(tmp_path, monkeypatch):
    established = []
    real = SqlaTransport.establish_connection

    def counting(self):
        established.append(self)
        return real(self)

    monkeypatch.setattr(SqlaTransport, "establish_connection", counting)
    url = f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    settings = Settings(broker_url=url)
    queue = f"pool-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        enqueue_job(f"job_{i}", queue, settings=settings)
    assert len(established) == 1
    with Connection(url) as conn, conn.SimpleQueue(queue) as simple:
        bodies = [simple.get(timeout=5) for _ in range(3)]
        for message in bodies:
            message.ack()
    assert sorted(literal_eval(m.headers["argsrepr"])[0] for m in bodies) == ["job_0", "job_1",
                                                                             "job_2"]


@pytest.fixture(autouse=True)
def _fresh_clients():
    """Each test starts with no cached client (a previous test's broker is gone)."""
    from core.queue import _client

    _client.cache_clear()
    yield
    _client.cache_clear()
