"""The `basis up --demo` scenario: everything a new user would do by hand, through the REST API.

Builds the warm-started demo model into the first model root, uploads the synthetic arithmetic
dataset, submits a BASIS job and prints its events and a progress line per step until it ends.
Going through the API with the shared client (not the services) means the demo exercises exactly
what users and the dashboard use.
"""

from __future__ import annotations

import time
from typing import Any

from client import BasisClient
from client.summary import job_summary
from core.status import TERMINAL, JobStatus

# The name the demo model is served under (a directory in the first model root); its shape is
# trainer.tiny.DEMO_SHAPE.
DEMO_MODEL_NAME = "tiny-arith"


DEMO_USER = "demo"
DEMO_DATASET_NAME = "arithmetic-demo"
DEMO_KEY_FILE = "demo-api-key"  # in the data dir, mode 600: the key `make run` printed last time


def demo_api_key(settings: Any) -> tuple[str, bool]:
    """(key, reused): the demo user's key saved by an earlier `basis up --demo` while it still
    authenticates as that user, else a new one, saved. Keys are stored hashed, so the secret can
    only be reused from this file; every `make run` minting another key left them piling up."""
    from core.db import get_engine, session_scope
    from core.services.keys import authenticate, create_key

    path = settings.data_dir / DEMO_KEY_FILE
    saved = path.read_text().strip() if path.is_file() else None
    with session_scope(get_engine(settings.database_url)) as session:
        user = authenticate(session, saved) if saved else None
        if saved and user is not None and user.name == DEMO_USER:
            return saved, True
        _, secret = create_key(session, DEMO_USER)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret, False


def ensure_model(settings: Any, warm_steps: int | None) -> None:
    from trainer.demo_model import demo_recipe, ensure_demo_model, is_demo_model
    from trainer.sinks import PhaseProgress, format_seconds

    path = settings.model_roots[0] / DEMO_MODEL_NAME
    if is_demo_model(path, demo_recipe(warm_steps=warm_steps)):
        ensure_demo_model(path, warm_steps=warm_steps)  # adds its training defaults if missing
        return
    print(f"basis up: building the demo model in {path} (once; about 1 minute on an idle 2-core "
          "CPU: a supervised warm start that stops when it adds two-digit numbers well enough)",
          flush=True)
    start = time.monotonic()
    # A line at each tenth of the most steps it may take (it usually stops after half of them).
    progress = PhaseProgress("basis up: demo model warm start, step", lambda line, _: print(
        line, flush=True), every=0.1, min_seconds=0.0, eta="at most")
    ensure_demo_model(path, warm_steps=warm_steps, progress=progress)
    print(f"basis up: demo model ready in {format_seconds(time.monotonic() - start)}", flush=True)


def demo_dataset() -> bytes:
    """The arithmetic dataset of `python -m trainer demo` (same rows, same seed)."""
    import json

    from trainer.cli import DEMO_DATA_SEED, DEMO_ROWS
    from trainer.tasks import generate_arithmetic

    rows = generate_arithmetic(DEMO_ROWS, seed=DEMO_DATA_SEED)
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def run_demo(settings: Any, base_url: str, api_key: str | None, stack: Any, *, steps: int | None = None,
             warm_steps: int | None = None) -> str:
    """Run the demo job; returns its final status. Raises RuntimeError if the stack dies."""
    from trainer.cli import DEMO_CONFIG  # tuned for a laptop CPU (docs/benchmarks.md, "CPU demo")

    ensure_model(settings, warm_steps)
    config = dict(DEMO_CONFIG)
    if steps is not None:
        config.update(max_steps=steps, checkpoint_every=min(steps, config["checkpoint_every"]),
                      eval_every=min(steps, config["eval_every"]),
                      probe_every=min(steps, config["probe_every"]))
    with BasisClient(base_url, api_key, timeout=60) as api:
        unfinished = _unfinished_job(api)
        if unfinished is not None:  # a previous `basis up --demo` was stopped mid-run: finish that
            print(f"basis up: following the unfinished demo job {unfinished} (resumed, not resubmitted)",
                  flush=True)
            return follow(api, unfinished, stack)
        content = demo_dataset()
        dataset = next((d for d in api.datasets() if d.name == DEMO_DATASET_NAME
                        and d.bytes == len(content)), None)
        if dataset is not None:  # the same rows as last time: not another copy per `make run`
            print(f"basis up: reusing dataset {dataset.id} ({dataset.rows} rows)", flush=True)
        else:
            dataset = api.upload_dataset(content, "arithmetic.jsonl", name=DEMO_DATASET_NAME)
            print(f"basis up: uploaded dataset {dataset.id} ({dataset.rows} rows)", flush=True)
        job = api.create_job(dataset_id=dataset.id, model=DEMO_MODEL_NAME, config=config)
        print(f"basis up: submitted job {job.id} (BASIS, {config['max_steps']} steps); "
              f"watch it at http://127.0.0.1:{settings.dashboard_port}", flush=True)
        return follow(api, job.id, stack)


def _unfinished_job(api: BasisClient) -> str | None:
    """Newest job of user `demo` that has not ended, if any (the furthest along first)."""
    for status in (JobStatus.running, JobStatus.estimating_priors, JobStatus.starting,
                   JobStatus.queued):
        jobs = api.list_jobs(status=status, limit=1).data
        if jobs:
            return jobs[0].id
    return None


def follow(api: BasisClient, job_id: str, stack: Any, interval: float = 2.0) -> str:
    """Print the job's log (status, a progress line per step with ETA, warnings) until it ends,
    then its summary (held-out accuracy before -> after); returns the final status."""
    after = None
    while True:
        if stack is not None and stack.dead():
            raise RuntimeError(f"{stack.dead()[0].name} exited while the demo job was running")
        page = api.logs(job_id, after=after, limit=500)
        for line in page.data:
            print(f"  {line.line}", flush=True)
            after = line.id
        job = api.get_job(job_id)
        if job.status in TERMINAL and not page.has_more and not api.logs(job_id, after=after).data:
            print(f"basis up: job {job_summary(api, job)}", flush=True)
            return job.status
        time.sleep(interval)
