"""Fault-injection fixtures: servers the test owns, real `basis worker` processes, a tiny model.

Choices:
- Faults that hit a server (a Postgres restart, a Redis flush or restart) run against a throwaway
  server started by the fixture in the test's tmp dir on a free port, never the shared one: other
  test runs (and people) use that, and a restart would fail them. No binary -> skip naming what to
  install (fail under CI=true, like tests/conftest.py).
- Faults that hit only a process (SIGKILL of a worker, a trainer that raises) use the shared
  Postgres/Redis fixtures from tests/conftest.py, each test on its own schema and queue name.
- Workers are the real thing: `python -m cli worker` in their own process group, so SIGKILL
  takes the whole process tree exactly as the OOM killer or a power cut would.
- The API runs in-process (TestClient) on the same database, storage and broker as the workers,
  so a job is submitted, enqueued and read back exactly as a user would.
- Timings are shrunk through the worker's own settings (`BASIS_WORKER_*`): heartbeat 0.5 s, a job
  silent for 4 s is orphaned, sweeps every 1 s, Redis redelivers after 6 s.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from api.main import create_app
from core.db import dispose_engines, migrate, session_scope
from core.models import Job, JobEvent, Metric
from core.services.keys import create_key
from core.settings import Settings
from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled"}

# A job that finishes in seconds on one CPU core with every kind of output (priors, metrics,
# histograms, checkpoints). Tests override max_steps / checkpoint_every.
FAST_JOB: dict[str, Any] = {
    "estimator": "basis", "reward": "exact", "batch_size": 4, "n0": 2, "max_steps": 6,
    "sampling": {"max_new_tokens": 4}, "optimizer": {"lr": 3e-3, "micro_batch_size": 4},
    "eval_every": 0, "eval_size": 4, "probe_every": 0, "checkpoint_every": 2,
    "reward_workers": 0, "seed": 3,
}

# Worker timings for fault tests (see module docstring).
FAST_WORKER = {"worker_heartbeat_seconds": "0.5", "worker_stale_after_seconds": "4",
               "worker_sweep_seconds": "1", "worker_visibility_timeout_seconds": "6",
               "worker_db_retry_seconds": "120"}


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str,
               processes: tuple[subprocess.Popen, ...] = (), logs: tuple[Path, ...] = (),
               interval: float = 0.2) -> Any:
    """Poll `predicate` until truthy; fail with the workers' log tails on timeout or a dead worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"worker exited ({process.returncode}) while waiting for {what}\n"
                            + _tails(logs))
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n" + _tails(logs))


def _tails(logs: tuple[Path, ...]) -> str:
    return "\n".join(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}" for log in logs
                     if log.exists())


# --------------------------------------------------------------------------- owned servers


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a tmp dir, trust auth, listening on 127.0.0.1:`port` only."""

    datadir: Path
    port: int
    as_user: list[str] = field(default_factory=list)  # runuser prefix when we are root

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
                        *args], check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("-l", str(self.datadir.parent / "postgres.log"), "-o",
                  f"-p {self.port} -k {self.datadir.parent} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c full_page_writes=off", "start")

    def stop(self) -> None:
        # "fast": roll back open transactions and cut every connection, as a restart in
        # production (a container update, a failover) does.
        self._ctl("-m", "fast", "stop")

    def new_database(self) -> str:
        """A fresh database, migrated; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = self.url.rsplit("/", 1)[0] + f"/{name}"
        migrate(url)
        dispose_engines()
        return url


@pytest.fixture(scope="session")
def owned_postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster (initdb) that tests may stop and restart at will."""
    initdb = _pg_bin("initdb")
    if initdb is None or _pg_bin("pg_ctl") is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql "
                     "(apt-get install postgresql) to run the Postgres-restart test")
    # Not under pytest's tmp dir: that is private to the user running pytest, and as root the
    # server must run as `postgres` (initdb refuses root), which could not enter it.
    base = Path(tempfile.mkdtemp(prefix="basis-owned-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            _unavailable("running as root, and initdb refuses root: create a 'postgres' user "
                         "(the postgresql package does) or run the tests as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    datadir = base / "data"
    subprocess.run([*as_user, initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    server = PostgresServer(datadir, free_port(), as_user)
    server.start()
    try:
        yield server
    finally:
        dispose_engines()
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class RedisServer:
    """A redis-server with no persistence on 127.0.0.1:`port`; `restart()` comes back empty."""

    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone, like a crash of an unpersisted Redis."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def owned_redis(tmp_path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server not found; install redis (apt-get install redis-server) to run "
                     "the Redis flush/restart tests")
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --------------------------------------------------------------------------- the platform


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A one-layer random tiny model (built once, copied into each test's model root)."""
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("rel-model") / "tiny", layers=1, hidden=64,
                            heads=2)


@dataclass
class Lab:
    """One platform: settings shared by the in-process API and the worker processes."""

    settings: Settings
    env: dict[str, str]
    tmp: Path
    client: TestClient | None = None
    headers: dict[str, str] = field(default_factory=dict)
    workers: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)

    @property
    def engine(self):
        return self.client.app.state.engine

    def start_worker(self, name: str = "worker", env: dict[str, str] | None = None) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 - owned by the child; closed when the test ends
        process = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--loglevel", "INFO"],
                                   env=env or self.env, cwd=REPO, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append((process, log))
        return process

    def log_of(self, process: subprocess.Popen) -> Path:
        return next(log for p, log in self.workers if p is process)

    def stop_workers(self) -> None:
        for process, _ in self.workers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def wait(self, predicate, *, timeout: float, what: str, interval: float = 0.2) -> Any:
        live = tuple(p for p, _ in self.workers if p.poll() is None)
        return wait_until(predicate, timeout=timeout, what=what, processes=live,
                          logs=tuple(log for _, log in self.workers), interval=interval)

    # --- the user's side, through the API

    def upload(self, rows: int = 32) -> str:
        from trainer.tasks import generate_arithmetic

        body = "".join(json.dumps(r) + "\n" for r in generate_arithmetic(rows, seed=0)).encode()
        response = self.client.post("/v1/datasets", headers=self.headers,
                                    files={"file": ("arith.jsonl", body, "application/jsonl")})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def submit(self, model: str = "tiny", dataset_id: str | None = None, **config: Any) -> str:
        response = self.client.post("/v1/jobs", headers=self.headers, json={
            "dataset_id": dataset_id or self.upload(), "model": model,
            "config": {**FAST_JOB, **config}})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=self.headers)
        return response.json() if response.status_code == 200 else {}

    def status(self, job_id: str) -> str | None:
        return self.job(job_id).get("status")

    # --- the truth, straight from the database

    def metric_steps(self, job_id: str, name: str = "reward/mean") -> list[int]:
        """Every stored step of one metric, duplicates included (the table's key forbids them)."""
        with self.engine.connect() as conn:
            return list(conn.scalars(select(Metric.step).where(Metric.job_id == job_id,
                                                               Metric.name == name)
                                     .order_by(Metric.step)))

    def events(self, job_id: str) -> list[JobEvent]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(JobEvent).where(JobEvent.job_id == job_id)
                                     .order_by(JobEvent.id)))

    def db_status(self, job_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.scalar(select(Job.status).where(Job.id == job_id))


def make_lab(tmp_path: Path, tiny_model: Path, database_url: str, broker_url: str,
             **worker_env: str) -> Lab:
    queue = f"rel-{uuid.uuid4().hex[:8]}"  # never sees another run's messages on a shared Redis
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, broker_url=broker_url,
                        model_roots=[tmp_path / "models"], worker_queue=queue, api_key=None)
    settings.model_roots[0].mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_model, settings.model_roots[0] / "tiny")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASIS_")}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    basis = {"data_dir": str(settings.data_dir), "database_url": database_url,
             "broker_url": broker_url, "model_roots": str(settings.model_roots[0]),
             "worker_queue": queue, **FAST_WORKER, **worker_env}
    env.update({f"BASIS_{k.upper()}": v for k, v in basis.items()})
    return Lab(settings, env, tmp_path)


@contextmanager
def running(lab: Lab) -> Iterator[Lab]:
    """The lab with its API up and a key for one user; every worker it started is stopped after."""
    from core.queue import enqueue_job

    settings = lab.settings
    app = create_app(settings, enqueue=lambda job_id, queue: enqueue_job(job_id, queue,
                                                                         settings=settings))
    with session_scope(app.state.engine) as session:
        _, secret = create_key(session, "reliability")
    lab.headers = {"Authorization": f"Bearer {secret}"}
    try:
        with TestClient(app) as client:
            lab.client = client
            yield lab
    finally:
        lab.stop_workers()
        app.state.engine.dispose()
