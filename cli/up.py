"""`basis up` (the whole platform on one machine) and `basis worker` (a worker alone).

`basis up [--demo [--exit-when-done]]`:
  migrations -> reconcile the queue with the database -> API (uvicorn), one Celery worker and the
  dashboard (streamlit) as child processes -> supervise -> on Ctrl-C stop them (the worker first
  gets a warm shutdown, so a running job stops at a step boundary and resumes at the next start).
  With `--demo` it also builds the demo model, makes an API key for user `demo` (printed, and given
  to the dashboard), uploads the synthetic arithmetic dataset, submits a BASIS job and follows it.

`basis worker [--queue Q] [--concurrency N] [--pool P]`: a Celery worker on the configured broker,
for lab machines pointing at the shared Postgres and Redis.

Choices:
- Children run in their own sessions (process groups), so a terminal's Ctrl-C reaches only this
  supervisor, which then stops them in order: dashboard and API at once, the worker with a grace
  period (`--grace`, default 60 s) before it is killed.
- A child that dies on its own is restarted after a backoff (1, 2, 4 ... 30 s) while the others
  keep running (issue 18: one dead worker used to take the whole platform down). A child that
  dies more than MAX_RESTARTS times within RESTART_WINDOW_S stops the stack with an error: it is
  broken, not unlucky. When the worker dies on the embedded broker, it was the only worker, so its
  jobs are released and re-enqueued before it restarts: the new worker resumes them at once from
  their last checkpoint instead of after the stale-heartbeat timeout.
- With the embedded broker `basis up` starts the only worker, so any job still active from the last
  run is orphaned by definition: it is re-enqueued at once (`stale_after_seconds=0`) and resumes
  from its checkpoint, instead of waiting for its heartbeat to go stale.
- Nothing heavy is imported at module level: cli/main.py imports this module for every `basis`
  command, including the quick REST client ones. The server packages (core, worker) are imported
  directly inside the commands; the demo (cli/demo.py) goes through the REST client.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `up` and `worker` to the `basis` command line (called by cli/main.py)."""
    up = subparsers.add_parser("up", help="run API, worker and dashboard on this machine")
    up.add_argument("--demo", action="store_true",
                    help="build the demo model, upload the demo dataset, submit a BASIS job, follow it")
    up.add_argument("--exit-when-done", action="store_true",
                    help="with --demo: stop everything when the demo job ends (exit 0 if it succeeded)")
    up.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    up.add_argument("--grace", type=float, default=60.0,
                    help="seconds the worker gets to stop its job cleanly on shutdown")
    up.add_argument("--demo-steps", type=int, default=None, help=argparse.SUPPRESS)
    up.add_argument("--demo-warm-steps", type=int, default=None, help=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)

    worker = subparsers.add_parser("worker", help="run a Celery worker on the configured broker")
    worker.add_argument("--queue", help="queue to consume (default BASIS_WORKER_QUEUE)")
    worker.add_argument("--concurrency", type=int, default=1,
                        help="jobs at once; 1 per GPU set (the solo pool always runs one)")
    worker.add_argument("--pool", help="Celery pool (default BASIS_WORKER_POOL, solo)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)


# ----------------------------------------------------------------------------- worker


def worker_argv(queue: str, pool: str, concurrency: int, loglevel: str) -> list[str]:
    """Arguments for `celery worker`: one queue, acks-late semantics from the app config."""
    return ["worker", "--pool", pool, "--concurrency", str(concurrency), "--queues", queue,
            "--loglevel", loglevel, "--hostname", f"{queue}-{os.getpid()}@%h",
            # Gossip, mingle and event heartbeats need broadcast, which the SQLite broker lacks;
            # the database, not the broker, knows which worker runs which job.
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def cmd_worker(args: argparse.Namespace) -> int:
    from core.settings import get_settings
    from worker.celery_app import app
    from worker.config import get_worker_settings

    _quiet_libraries()
    settings = get_settings()
    queue = args.queue or settings.worker_queue
    pool = args.pool or get_worker_settings().pool
    app.worker_main(worker_argv(queue, pool, args.concurrency, args.loglevel))
    return 0


def _quiet_libraries() -> None:
    """Progress bars from transformers/huggingface_hub would flood the worker log (one per load
    and per checkpoint); warnings and errors still show."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


# ----------------------------------------------------------------------------- up


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    grace: float = 10.0
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> subprocess.Popen:
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        return self.process

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.alive():
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass


class Stack:
    """The child processes of `basis up` and their orderly shutdown."""

    def __init__(self, children: list[Child]):
        self.children = children

    def start(self) -> None:
        for child in self.children:
            pid = child.start().pid
            print(f"basis up: started {child.name} (pid {pid})", flush=True)

    def dead(self) -> list[Child]:
        return [c for c in self.children if not c.alive()]

    def stop(self) -> None:
        for child in self.children:
            child.signal(signal.SIGTERM)
        for child in sorted(self.children, key=lambda c: c.grace):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=child.grace)
            except subprocess.TimeoutExpired:
                print(f"basis up: {child.name} did not stop in {child.grace:.0f}s; killing it",
                      flush=True)
                child.signal(signal.SIGKILL)
                child.process.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
                for other in self.children:
                    other.signal(signal.SIGKILL)
                raise


def _child_env(settings, api_key: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["BASIS_DATA_DIR"] = str(settings.data_dir)  # absolute: children may resolve it elsewhere
    env["BASIS_API_URL"] = f"http://127.0.0.1:{settings.api_port}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if api_key:
        env["BASIS_API_KEY"] = api_key
    return env


def build_stack(settings, *, api_key: str | None, dashboard: bool, grace: float) -> Stack:
    """API, worker and (optionally) dashboard processes for `settings`."""
    env = _child_env(settings, api_key)
    python = sys.executable
    children = [
        Child("api", [python, "-m", "uvicorn", "api.main:app", "--host", settings.api_host,
                      "--port", str(settings.api_port), "--log-level", "warning"], env),
        Child("worker", [python, "-m", "cli", "worker", "--queue", settings.worker_queue], env,
              grace=grace),
    ]
    app_file = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    if dashboard and app_file.is_file():
        children.append(Child("dashboard", [
            python, "-m", "streamlit", "run", str(app_file),
            # Same interface as the API (loopback by default): the demo's key is in this process.
            "--server.address", settings.api_host,
            "--server.port", str(settings.dashboard_port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal"], env))  # no "Deploy" button: this is not a Streamlit app to publish
    elif dashboard:
        print(f"basis up: no dashboard at {app_file}; running without it", flush=True)
    return Stack(children)


def _embedded_broker(settings) -> bool:
    return (settings.broker_url or "").startswith("sqla+sqlite")


def wait_for_api(base_url: str, stack: Stack, timeout: float = 60.0) -> None:
    from client import ApiError, BasisClient

    deadline = time.monotonic() + timeout
    with BasisClient(base_url, timeout=2) as api:
        while time.monotonic() < deadline:
            if stack.dead():
                raise RuntimeError(f"{stack.dead()[0].name} exited while the stack was starting")
            try:
                api.health()
                return
            except ApiError:  # not up yet (refused), or up but not healthy yet (503)
                pass
            time.sleep(0.3)
    raise RuntimeError(f"the API did not answer on {base_url} within {timeout:.0f}s")


def cmd_up(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from core.db import migrate, sqlite_problem
    from core.settings import get_settings
    from worker.reconcile import reconcile

    _quiet_libraries()  # for the demo model build here, and inherited by the children
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"basis up: data in {settings.data_dir}", flush=True)
    if problem := sqlite_problem(settings.database_url):
        database = make_url(settings.database_url).database
        print(f"basis up: the database {database} is corrupted ({problem}); not starting.\n"
              f"  To recover: 1) stop every basis process; 2) move the file aside: mv {database} "
              f"{database}.corrupt (with its -wal and -shm files); 3) restore your last backup to "
              f"{database}, or start empty (basis up creates a new database; the datasets and "
              f"checkpoints under {settings.storage_dir} stay on disk but are no longer listed). "
              "See docs/reliability.md.", file=sys.stderr, flush=True)
        return 1
    migrate(settings.database_url)
    requeued = reconcile(settings=settings,
                         stale_after_seconds=0 if _embedded_broker(settings) else None)
    if requeued:
        print(f"basis up: re-enqueued {len(requeued)} unfinished job(s)", flush=True)

    api_key = None
    if args.demo:
        from cli.demo import DEMO_KEY_FILE, demo_api_key

        api_key, reused = demo_api_key(settings)
        where = f"the one saved in {settings.data_dir / DEMO_KEY_FILE}" if reused else "new"
        print(f"basis up: API key for user 'demo' ({where}; also given to the dashboard):\n{api_key}",
              flush=True)

    stack = build_stack(settings, api_key=api_key, dashboard=not args.no_dashboard, grace=args.grace)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    base_url = f"http://127.0.0.1:{settings.api_port}"
    try:
        stack.start()
        wait_for_api(base_url, stack)
        print(f"basis up: API {base_url}/docs", flush=True)
        if not args.no_dashboard:
            print(f"basis up: dashboard http://{settings.api_host}:{settings.dashboard_port}",
                  flush=True)
        if args.demo:
            from cli.demo import run_demo

            status = run_demo(settings, base_url, api_key, stack, steps=args.demo_steps,
                              warm_steps=args.demo_warm_steps)
            if args.exit_when_done:
                return 0 if status == "succeeded" else 1
        return _supervise(stack, _resume_orphans(settings))
    except KeyboardInterrupt:
        print("\nbasis up: stopping (the running job, if any, resumes at the next start)", flush=True)
        return 130
    except RuntimeError as exc:
        print(f"basis up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        try:
            stack.stop()
        except KeyboardInterrupt:  # a second Ctrl-C while waiting: stop() already killed them
            print("basis up: killed the remaining processes", flush=True)
        signal.signal(signal.SIGTERM, previous)


RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0


def _supervise(stack: Stack, on_restart=lambda child: None, poll: float = 0.5) -> int:
    """Restart dead children with backoff (module docstring); returns 1 when one keeps dying.
    `on_restart(child)` runs just before a child is started again."""
    crashes: dict[str, list[float]] = {}
    restart_at: dict[str, float] = {}
    while True:
        now = time.monotonic()
        for child in stack.dead():
            if child.name not in restart_at:
                recent = [t for t in crashes.get(child.name, []) if now - t < RESTART_WINDOW_S]
                crashes[child.name] = recent = [*recent, now]
                code = child.process.returncode if child.process is not None else None
                if len(recent) > MAX_RESTARTS:
                    print(f"basis up: {child.name} exited with status {code}, {len(recent)} times "
                          f"in {RESTART_WINDOW_S:.0f} s; stopping", flush=True)
                    return 1
                delay = RESTART_BACKOFF_S[min(len(recent), len(RESTART_BACKOFF_S)) - 1]
                restart_at[child.name] = now + delay
                print(f"basis up: {child.name} exited with status {code}; restarting it in "
                      f"{delay:.0f} s (the rest keeps running)", flush=True)
            elif now >= restart_at[child.name]:
                del restart_at[child.name]
                on_restart(child)
                pid = child.start().pid
                print(f"basis up: restarted {child.name} (pid {pid})", flush=True)
        time.sleep(poll)


def _resume_orphans(settings):
    """Before the embedded stack's only worker restarts: release and re-enqueue its jobs."""

    def on_restart(child) -> None:
        if child.name != "worker" or not _embedded_broker(settings):
            return
        from core.db import get_engine
        from core.jobs import lifecycle
        from worker.reconcile import reconcile

        try:
            with get_engine(settings.database_url).begin() as conn:
                released = lifecycle.release_all(conn)
            reconcile(settings=settings, stale_after_seconds=0)
        except Exception as exc:  # noqa: BLE001 - the sweep finds them later; never stop the stack
            print(f"basis up: could not hand the worker's jobs back ({exc}); they resume when "
                  "their heartbeat goes stale", flush=True)
            return
        if released:
            print(f"basis up: resuming {len(released)} job(s) of the dead worker", flush=True)

    return on_restart


def _raise_keyboard_interrupt(*_args) -> None:
    raise KeyboardInterrupt
