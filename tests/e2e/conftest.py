"""End-to-end helpers: real worker processes, a tiny model on disk, the demo dataset, a job config
that finishes in seconds on a CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# 3 steps with every output the API serves: metrics, histograms, a value-MSE probe, checkpoints.
SHORT_JOB = {
    "estimator": "basis", "reward": "exact", "batch_size": 4, "max_steps": 3, "n0": 2,
    "sampling": {"max_new_tokens": 5}, "optimizer": {"lr": 3e-3, "micro_batch_size": 4},
    "eval_every": 0, "eval_size": 4, "probe_every": 2, "probe_prompts": 2, "probe_rollouts": 10,
    "checkpoint_every": 2, "reward_workers": 0, "seed": 1,
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A one-layer random tiny model, built once and copied into each test's model root."""
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("e2e-model") / "tiny", layers=1, hidden=64,
                            heads=2)


def install_model(tiny_model: Path, root: Path, name: str = "tiny") -> None:
    import shutil

    shutil.copytree(tiny_model, root / name)


def demo_jsonl(rows: int = 48) -> bytes:
    from trainer.tasks import generate_arithmetic

    return "".join(json.dumps(r) + "\n" for r in generate_arithmetic(rows, seed=0)).encode()


def service_env(**basis: str) -> dict[str, str]:
    """The environment of a child process: ours, minus BASIS_* leaking in, plus `basis`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASIS_")}
    env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.update({f"BASIS_{k.upper()}": v for k, v in basis.items()})
    return env


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")  # noqa: SIM115 - closed when the process is reaped by the fixture
    return subprocess.Popen([sys.executable, "-m", *argv], env=env, cwd=REPO, stdout=handle,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def wait_until(predicate, *, timeout: float, what: str, process=None, log: Path | None = None,
               interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            pytest.fail(f"process exited ({process.returncode}) while waiting for {what}:\n{tail}")
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def check_job_outputs(client, headers: dict, job_id: str, steps: int) -> None:
    """What a user reads back through the API after a job succeeded."""
    import io
    import tarfile

    job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    assert job["status"] == "succeeded", job
    assert job["current_step"] == steps and job["error"] is None
    assert job["latest_metrics"]["reward/mean"] is not None

    metrics = client.get(f"/v1/jobs/{job_id}/metrics", headers=headers,
                         params={"names": "reward/mean,value_mse/basis"}).json()["data"]
    by_name = {m["name"]: m for m in metrics}
    assert by_name["reward/mean"]["steps"][-steps:] == list(range(1, steps + 1))
    assert by_name["value_mse/basis"]["steps"], "the probe wrote no value-MSE"

    hists = client.get(f"/v1/jobs/{job_id}/advantages", headers=headers,
                       params={"limit": 1000}).json()["data"]
    assert [h["step"] for h in hists] == list(range(1, steps + 1))
    assert all(len(h["edges"]) == len(h["counts"]) + 1 for h in hists)
    assert sum(hists[0]["counts"]) > 0

    ckpts = client.get(f"/v1/jobs/{job_id}/checkpoints", headers=headers).json()["data"]
    assert ckpts and ckpts[-1]["step"] == steps
    content = client.get(f"/v1/jobs/{job_id}/checkpoints/{ckpts[-1]['id']}/content", headers=headers)
    assert content.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(content.content)) as tar:
        assert tar.getnames(), "empty checkpoint archive"

    events = client.get(f"/v1/jobs/{job_id}/events", headers=headers,
                        params={"limit": 1000}).json()["data"]
    statuses = [e["data"]["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "starting", "estimating_priors", "running", "succeeded"], statuses
