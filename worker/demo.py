"""The `basis up --demo` scenario: everything a new user would do by hand, through the REST API.

Builds the warm-started demo model into the first model root, uploads the synthetic arithmetic
dataset, submits a BASIS job and prints its events and a progress line per step until it ends.
Going through the API (not the services) means the demo exercises exactly what users and the
dashboard use.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL = {"succeeded", "failed", "cancelled"}


def ensure_model(settings, warm_steps: int | None) -> None:
    from trainer.tiny import ensure_demo_model, is_demo_model
    from worker.cli import DEMO_MODEL

    path = settings.model_roots[0] / DEMO_MODEL
    if not is_demo_model(path):
        print(f"basis up: building the demo model in {path} (about 2 CPU minutes, once)", flush=True)
    ensure_demo_model(path, warm_steps=warm_steps)


def demo_dataset() -> bytes:
    """The arithmetic dataset of `python -m trainer demo` (same rows, same seed)."""
    import json

    from trainer.cli import DEMO_DATA_SEED, DEMO_ROWS
    from trainer.tasks import generate_arithmetic

    rows = generate_arithmetic(DEMO_ROWS, seed=DEMO_DATA_SEED)
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except Exception:  # noqa: BLE001 - show whatever came back
            message = response.text[:500]
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {message}")
    return response.json()


def run_demo(settings, base_url: str, api_key: str, stack, *, steps: int | None = None,
             warm_steps: int | None = None) -> str:
    """Run the demo job; returns its final status. Raises RuntimeError if the stack dies."""
    from trainer.cli import DEMO_CONFIG  # tuned for a laptop CPU (docs/benchmarks.md, "CPU demo")
    from worker.cli import DEMO_MODEL

    ensure_model(settings, warm_steps)
    config = dict(DEMO_CONFIG)
    if steps is not None:
        config.update(max_steps=steps, checkpoint_every=min(steps, config["checkpoint_every"]),
                      eval_every=min(steps, config["eval_every"]),
                      probe_every=min(steps, config["probe_every"]))
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"},
                      timeout=60) as api:
        unfinished = _unfinished_job(api)
        if unfinished is not None:  # a previous `basis up --demo` was stopped mid-run: finish that
            print(f"basis up: following the unfinished demo job {unfinished} (resumed, not resubmitted)",
                  flush=True)
            return follow(api, unfinished, stack)
        dataset = _check(api.post("/v1/datasets", data={"name": "arithmetic-demo"},
                                  files={"file": ("arithmetic.jsonl", demo_dataset(),
                                                  "application/jsonl")}))
        print(f"basis up: uploaded dataset {dataset['id']} ({dataset.get('rows')} rows)", flush=True)
        job = _check(api.post("/v1/jobs", json={"dataset_id": dataset["id"], "model": DEMO_MODEL,
                                                "config": config}))
        print(f"basis up: submitted job {job['id']} (BASIS, {config['max_steps']} steps); "
              f"watch it at http://127.0.0.1:{settings.dashboard_port}", flush=True)
        return follow(api, job["id"], stack)


def _unfinished_job(api: httpx.Client) -> str | None:
    """Newest job of user `demo` that has not ended, if any."""
    for status in ("running", "estimating_priors", "starting", "queued"):
        jobs = _check(api.get("/v1/jobs", params={"status": status, "limit": 1}))["data"]
        if jobs:
            return jobs[0]["id"]
    return None


def follow(api: httpx.Client, job_id: str, stack, interval: float = 2.0) -> str:
    """Print the job's events and step progress until it ends; returns the final status."""
    after = 0
    last_step = -1
    while True:
        if stack is not None and stack.dead():
            raise RuntimeError(f"{stack.dead()[0].name} exited while the demo job was running")
        events = _check(api.get(f"/v1/jobs/{job_id}/events", params={"after": after, "limit": 500}))
        for event in events["data"]:
            print(f"  [{event['kind']}] {event['message']}", flush=True)
            after = event["id"]
        job = _check(api.get(f"/v1/jobs/{job_id}"))
        step = job.get("current_step") or 0
        if step != last_step and job["status"] == "running":
            latest = job.get("latest_metrics") or {}
            reward = latest.get("reward/mean")
            extra = f"  reward/mean {reward:.3f}" if isinstance(reward, int | float) else ""
            print(f"  step {step}/{job.get('max_steps')}{extra}", flush=True)
            last_step = step
        if job["status"] in TERMINAL and not events["has_more"]:
            print(f"basis up: job {job_id} {job['status']}"
                  + (f": {job['error']}" if job.get("error") else ""), flush=True)
            return job["status"]
        time.sleep(interval)
