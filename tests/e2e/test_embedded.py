"""End to end on the embedded default: `basis up` alone (SQLite, the SQLite broker, one worker),
driven over HTTP like a user would; then stopped mid-job and started again, which resumes the job."""

from __future__ import annotations

import re

import httpx
import pytest

from core.db import dispose_engines, session_scope
from core.services.keys import create_key
from tests.e2e.conftest import (
    SHORT_JOB,
    check_job_outputs,
    demo_jsonl,
    install_model,
    service_env,
    spawn,
    stop,
    wait_until,
)
from tests.net import api_healthy, free_port

pytestmark = pytest.mark.slow
# Long enough that the shutdown below lands mid-run: a step takes ~0.02 s on an idle machine and
# ~0.3 s on a loaded one (30 steps could end within one 0.5 s poll).
STEPS = 150


def test_basis_up_runs_a_job_and_resumes_it_after_a_restart(tmp_path, tiny_model):
    data = tmp_path / "data"
    install_model(tiny_model, data / "models")
    port = free_port()
    env = service_env(data_dir=str(data), api_port=str(port))
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    up = spawn(["cli", "up", "--no-dashboard", "--grace", "60"], env, log)
    try:
        wait_until(lambda: api_healthy(url), timeout=90, what="the API", process=up, log=log)
        with session_scope_for(data) as session:
            _, secret = create_key(session, "e2e")
        headers = {"Authorization": f"Bearer {secret}"}
        client = httpx.Client(base_url=url, timeout=30)
        upload = client.post("/v1/datasets", headers=headers,
                             files={"file": ("arith.jsonl", demo_jsonl(), "application/jsonl")})
        assert upload.status_code == 201, upload.text
        job = client.post("/v1/jobs", headers=headers, json={
            "dataset_id": upload.json()["id"], "model": "tiny",
            "config": {**SHORT_JOB, "max_steps": STEPS, "probe_every": 10, "checkpoint_every": 10}})
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]

        def step() -> int:
            return client.get(f"/v1/jobs/{job_id}", headers=headers).json()["current_step"]

        wait_until(lambda: step() >= 1, timeout=180, what="the first step", process=up, log=log,
                   interval=0.02)
        # Ctrl-C / SIGTERM: warm shutdown stops the job at a step boundary and gives it back.
        assert stop(up, timeout=90) in (0, 130), log.read_text()[-3000:]

        up = spawn(["cli", "up", "--no-dashboard"], env, log.with_suffix(".2.log"))
        wait_until(lambda: api_healthy(url), timeout=90, what="the API after restart", process=up,
                   log=log.with_suffix(".2.log"))
        wait_until(lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"]
                   in {"succeeded", "failed", "cancelled"}, timeout=240,
                   what="the resumed job", process=up, log=log.with_suffix(".2.log"))
        check_job_outputs(client, headers, job_id, steps=STEPS)
        kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/events", headers=headers,
                                               params={"limit": 1000}).json()["data"]]
        assert "interrupted" in kinds and "resumed" in kinds, kinds
        # The succeeded job's final checkpoint is a model of its owner (issue 16).
        fine_tuned = client.get(f"/v1/jobs/{job_id}", headers=headers).json()["fine_tuned_model"]
        assert fine_tuned == f"ft/{job_id[-12:]}-step{STEPS}" and "exported" in kinds, kinds
        models = client.get("/v1/models", headers=headers).json()["data"]
        assert {m["id"]: m["source"] for m in models} == {"tiny": "local", fine_tuned: "export"}
    finally:
        stop(up, timeout=90)
        dispose_engines()
    assert re.search(r"started worker", log.read_text())


class session_scope_for:
    """A committed session on the embedded SQLite database of `data_dir`."""

    def __init__(self, data_dir):
        from core.db import make_engine

        self.engine = make_engine(f"sqlite:///{data_dir / 'basis.sqlite'}")

    def __enter__(self):
        self.scope = session_scope(self.engine)
        return self.scope.__enter__()

    def __exit__(self, *exc):
        result = self.scope.__exit__(*exc)
        self.engine.dispose()
        return result


def test_basis_up_demo_runs_the_demo_job_to_the_end(tmp_path):
    """`make run`'s command, shortened: demo model, key, dataset, BASIS job, exit when done."""
    import subprocess
    import sys

    from tests.e2e.conftest import REPO

    env = service_env(data_dir=str(tmp_path / "data"), api_port=str(free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "cli", "up", "--demo", "--exit-when-done", "--no-dashboard",
         "--demo-steps", "2", "--demo-warm-steps", "5"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    key = re.search(r"^(bk_\S+)$", result.stdout, re.MULTILINE)
    assert key, "the demo key was not printed on a line of its own"
    job = re.search(r"job (job_\w+) succeeded", result.stdout)
    assert job, out[-4000:]
    assert (tmp_path / "data" / "models" / "tiny-arith" / "config.json").is_file()
