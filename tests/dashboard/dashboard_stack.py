"""A real API on a real (SQLite) database seeded with finished jobs, for the dashboard's tests,
benchmark and screenshot.

- `serve_api(app)`: uvicorn in a background thread on a free localhost port (the dashboard talks
  HTTP, exactly as in production).
- `seed(settings, engine, steps=...)`: a user with a key, a dataset, a model directory, and jobs
  written through core's models and services: a finished BASIS job with `steps` steps of every
  metric the dashboard reads (value-MSE probes, advantage histograms, BASIS internals, timings,
  events, a checkpoint on disk), a finished GRPO job to compare against, and a failed job.
  The numbers are synthetic but shaped like a real run (rising reward, BASIS below REINFORCE++ on
  value-MSE), so the screenshot shows what a user would see.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from io import BytesIO
from pathlib import Path

import numpy as np
import uvicorn
from sqlalchemy import Engine, insert

from core.db import migrate, session_scope
from core.jobs.events import record_event
from core.models import (
    AdvantageHistogram,
    Checkpoint,
    Job,
    JobStatus,
    Metric,
    RolloutSample,
    User,
    new_id,
    utcnow,
)
from core.services import datasets as dataset_service
from core.services.keys import create_key
from core.settings import Settings
from core.status import TERMINAL
from tests.net import free_port

ROWS = [{"prompt": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in range(40)]
EDGES = [round(-1.0 + 0.1 * i, 10) for i in range(21)]  # the trainer's fixed edges: 20 bins in [-1, 1]


@dataclass
class Seeded:
    """What `seed` created: the key and the ids the tests look for."""

    key: str
    dataset_id: str
    model: str
    basis_job: str
    grpo_job: str
    failed_job: str
    steps: int
    checkpoint_id: str
    extra: dict = field(default_factory=dict)


class ApiServer:
    """uvicorn serving `app` on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_settings(root: Path, template: str | None = None) -> Settings:
    """Settings with everything under `root`; the database copied from `template` or migrated."""
    root.mkdir(parents=True, exist_ok=True)
    db = root / "basis.sqlite"
    if template:
        shutil.copyfile(template, db)
    else:
        migrate(f"sqlite:///{db}")
    return Settings(data_dir=root / "data", database_url=f"sqlite:///{db}",
                    model_roots=[root / "models"], api_key=None)


def _series(steps: int, rng: np.random.Generator, estimator: str) -> dict[str, dict[int, float]]:
    """Synthetic metric series {name: {step: value}} for a run of `steps` steps."""
    s = np.arange(1, steps + 1)
    speed = 1.0 if estimator == "basis" else 0.8
    p = 0.25 + 0.5 / (1 + np.exp(-(s / max(steps, 1) * 10 * speed - 4)))  # (steps,) success prob
    batch = 16
    acc = rng.binomial(batch, p) / batch
    out: dict[str, dict[int, float]] = {}

    def put(name: str, values: np.ndarray, at: np.ndarray = s) -> None:
        out[name] = {int(k): float(v) for k, v in zip(at, values, strict=True)}

    rollouts = 1 if estimator == "basis" else 8
    step_time = (0.9 if rollouts == 1 else 4.5) + rng.gamma(4, 0.02, steps)
    put("reward/mean", np.clip(acc + rng.normal(0, 0.02, steps), 0, 1))
    put("reward/accuracy", acc)
    put("reward/unscorable_frac", rng.binomial(batch, 0.02, steps) / batch)
    put("response/length_mean", 40 - 15 * p + rng.normal(0, 2, steps))
    put("loss/policy", rng.normal(0, 0.05, steps))
    put("kl/mean", 0.002 * s / steps + rng.gamma(2, 0.0005, steps))
    put("optim/grad_norm", rng.gamma(4, 0.1, steps))
    put("optim/lr", np.full(steps, 1e-5))
    put("adv/mean", rng.normal(0, 0.03, steps))
    put("adv/std", 0.45 - 0.1 * s / steps + rng.normal(0, 0.02, steps))
    put("adv/abs_mean", 0.35 - 0.08 * s / steps + rng.normal(0, 0.02, steps))
    put("adv/zero_frac", rng.uniform(0, 0.05, steps))
    if estimator == "basis":
        put("basis/c", 2.0 * s / steps + rng.normal(0, 0.15, steps))
        put("basis/active_frac", np.clip(0.85 - 0.2 * s / steps + rng.normal(0, 0.03, steps), 0, 1))
    put("time/rollout", 0.7 * step_time)
    put("time/reward", 0.05 * step_time)
    put("time/update", 0.22 * step_time)
    put("time/sync", 0.03 * step_time)
    put("time/step", step_time)
    put("time/elapsed", np.cumsum(step_time) + (40.0 if estimator == "basis" else 0.0))
    put("throughput/tokens_per_s", batch * rollouts * 40 / (0.7 * step_time))
    priors = 8 * len(ROWS) if estimator == "basis" else 0
    put("rollouts/total", priors + batch * rollouts * s)
    evals = np.concatenate([[0], s[s % 25 == 0]])
    put("eval/accuracy", np.clip(0.25 + 0.5 / (1 + np.exp(-(evals / max(steps, 1) * 10 * speed - 4)))
                                  + rng.normal(0, 0.02, evals.size), 0, 1), evals)
    probes = s[s % 10 == 0]
    base = 0.06 * np.exp(-probes / steps)
    put("value_mse/reinforce_pp", base * (1 + rng.normal(0, 0.1, probes.size)), probes)
    put("value_mse/basis", 0.31 * base * (1 + rng.normal(0, 0.1, probes.size)), probes)
    put("value_mse/group_mean_8", 0.45 * base * (1 + rng.normal(0, 0.1, probes.size)), probes)
    if estimator == "basis":
        put("priors/seconds", np.array([38.0]), np.array([0]))
        put("priors/rollouts", np.array([float(priors)]), np.array([0]))
    return out


def _histograms(steps: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        std = 0.45 - 0.15 * step / steps
        samples = np.clip(rng.normal(0.02, std, 16 * 8), -1, 1)  # under/overflow folded into the ends
        counts, _ = np.histogram(samples, bins=EDGES)
        rows.append({"step": step, "name": "advantage", "edges": EDGES, "counts": counts.tolist()})
    return rows


def add_job(engine: Engine, settings: Settings, owner_id: str, dataset_id: str, model: str, *,
            estimator: str, steps: int, status: JobStatus = JobStatus.succeeded,
            error: str | None = None, seed: int = 0, checkpoint: bool = True,
            max_steps: int | None = None) -> tuple[str, str | None]:
    """A job that ran `steps` steps (all its outputs written); returns (job id, checkpoint id)."""
    rng = np.random.default_rng(seed)
    rollouts = 1 if estimator == "basis" else 8
    config = {"estimator": estimator, "rollouts_per_prompt": rollouts, "batch_size": 16,
              "max_steps": max_steps or steps, "probe_every": 10, "eval_every": 25, "seed": seed}
    started = utcnow() - timedelta(seconds=steps * (1.0 if rollouts == 1 else 4.6))
    series = _series(steps, rng, estimator)
    finished = started + timedelta(seconds=float(max(series["time/elapsed"].values())))
    if status not in TERMINAL:
        started, finished = utcnow() - timedelta(seconds=float(max(series["time/elapsed"].values()))), None
    with session_scope(engine) as session:
        job = Job(owner_id=owner_id, dataset_id=dataset_id, model=model, estimator=estimator,
                  config=config, status=status.value, queue="gpu", max_steps=max_steps or steps,
                  current_step=steps, error=error, created_at=started - timedelta(seconds=5),
                  started_at=started, finished_at=finished)
        session.add(job)
        session.flush()
        job_id = job.id
        path = ["queued", *(["estimating_priors"] if estimator == "basis" else []), "running"]
        path += [status.value] if status != JobStatus.running else []
        transitions = list(zip(path, path[1:], strict=False))
        for before, after in transitions[:-1]:
            record_event(session, job_id, "status", f"status {before} -> {after}",
                                  data={"status": after, "from": before})
        rows = [{"job_id": job_id, "name": name, "step": step, "value": value}
                for name, values in series.items() for step, value in values.items()]
        for start in range(0, len(rows), 20_000):
            session.execute(insert(Metric), rows[start:start + 20_000])
        session.execute(insert(AdvantageHistogram),
                        [{"job_id": job_id, **h} for h in _histograms(steps, rng)])
        session.execute(insert(RolloutSample), [  # the last two steps' samples, one unscorable
            {"job_id": job_id, "step": step, "index": i, "prompt_id": f"p{i}", "prompt": f"{i}+{i}=",
             "completion": "" if i == 3 else str(2 * i + (step % 2)), "answer": str(2 * i),
             "reward": None if i == 3 else float(step % 2 == 0), "advantage": round(0.4 - 0.2 * i, 3),
             "baseline": None if i == 3 else 0.5, "finish_reason": "stop"}
            for step in (steps - 1, steps) for i in range(4)])
        checkpoint_id = None
        if checkpoint:
            relative = f"jobs/{job_id}/checkpoints/step-{steps:06d}"
            directory = settings.storage_dir / relative
            directory.mkdir(parents=True)
            (directory / "model.safetensors").write_bytes(b"\0" * 4096)
            (directory / "trainer_state.json").write_text(json.dumps({"step": steps}))
            ckpt = Checkpoint(job_id=job_id, step=steps, path=relative, bytes=4096)
            session.add(ckpt)
            session.flush()
            checkpoint_id = ckpt.id
            record_event(session, job_id, "checkpoint", f"Checkpoint at step {steps}",
                                  data={"step": steps, "checkpoint_id": checkpoint_id})
        before, after = transitions[-1]
        record_event(session, job_id, "status",
                              f"status {before} -> {after}" + (f": {error}" if error else ""),
                              level="error" if after == "failed" else "info",
                              data={"status": after, "from": before})
    return job_id, checkpoint_id


def add_eval(engine: Engine, owner_id: str, dataset_id: str, model: str, rewards: np.ndarray, *,
             temperature: float = 1.0, status: JobStatus = JobStatus.succeeded) -> str:
    """A finished evaluation as its worker leaves it: a `jobs` row of kind "eval", the metrics of
    `trainer.evaluate.summarize(rewards)` (rewards (rows, k), NaN = unscorable) at its one step,
    and a sample per (row, k) whose completion says which model, row and sample wrote it."""
    from trainer.evaluate import summarize

    rows, k = rewards.shape
    lengths = np.full(rewards.shape, 3.0)
    metrics = summarize(rewards, lengths).metrics()
    now = utcnow()
    with session_scope(engine) as session:
        job = Job(id=new_id("eval"), owner_id=owner_id, dataset_id=dataset_id, model=model,
                  estimator="eval", kind="eval",
                  config={"samples_per_prompt": k, "temperature": temperature, "reward": "exact"},
                  status=status.value, queue="gpu", max_steps=1, current_step=1,
                  created_at=now - timedelta(seconds=30), started_at=now - timedelta(seconds=20),
                  finished_at=now if status in TERMINAL else None)
        session.add(job)
        session.flush()
        eval_id = job.id
        session.execute(insert(Metric), [{"job_id": eval_id, "name": n, "step": 1, "value": v}
                                         for n, v in metrics.items()])
        session.execute(insert(RolloutSample), [
            {"job_id": eval_id, "step": 1, "index": r * k + j, "prompt_id": f"p{r}",
             "prompt": ROWS[r]["prompt"], "completion": f"{model} row {r} sample {j}",
             "answer": ROWS[r]["answer"],
             "reward": None if np.isnan(rewards[r, j]) else float(rewards[r, j]),
             "advantage": 0.0, "baseline": None, "finish_reason": "stop"}
            for r in range(rows) for j in range(k)])
        record_event(session, eval_id, "status", f"status running -> {status.value}",
                     data={"status": status.value})
    return eval_id


def seed(settings: Settings, engine: Engine, *, steps: int = 2000, user: str = "alice") -> Seeded:
    """A user, key, dataset, model dir and three jobs (see the module docstring)."""
    model_dir = settings.model_roots[0] / "tiny-qwen"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    data = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
    with session_scope(engine) as session:
        key, secret = create_key(session, user)
        owner_id = key.user_id
    with session_scope(engine) as session:
        owner = session.get(User, owner_id)
        dataset = dataset_service.create_dataset(
            session, settings, owner, source=BytesIO(data), filename="arithmetic.jsonl",
            content_type="application/jsonl", name="arithmetic")
        dataset_id = dataset.id
    failed, _ = add_job(engine, settings, owner_id, dataset_id, "tiny-qwen", estimator="basis",
                        steps=12, max_steps=100, status=JobStatus.failed, seed=2, checkpoint=False,
                        error="CUDA out of memory while generating rollouts (step 13)")
    grpo, _ = add_job(engine, settings, owner_id, dataset_id, "tiny-qwen", estimator="grpo",
                      steps=max(steps // 4, 1), seed=1, checkpoint=False)
    basis, checkpoint_id = add_job(engine, settings, owner_id, dataset_id, "tiny-qwen",
                                   estimator="basis", steps=steps, seed=0)
    return Seeded(key=secret, dataset_id=dataset_id, model="tiny-qwen", basis_job=basis,
                  grpo_job=grpo, failed_job=failed, steps=steps, checkpoint_id=checkpoint_id)


def seeded_stack(root: Path, *, steps: int = 2000, template: str | None = None):
    """(settings, app, Seeded) for a fresh seeded database under `root` (no server started)."""
    from api.main import create_app

    settings = make_settings(root, template)
    app = create_app(settings, enqueue=lambda job_id, queue: None)
    seeded = seed(settings, app.state.engine, steps=steps)
    return settings, app, seeded


if __name__ == "__main__":  # pragma: no cover - manual use: python tests/dashboard/dashboard_stack.py
    import sys
    import tempfile

    root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="basis-dash-"))
    _, application, info = seeded_stack(root)
    with ApiServer(application, port=int(sys.argv[2]) if len(sys.argv) > 2 else None) as server:
        print(json.dumps({"url": server.url, "key": info.key, "job": info.basis_job}), flush=True)
        while True:
            time.sleep(3600)
