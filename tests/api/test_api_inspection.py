"""Rollout samples and the live log of a real job: the app on a real database, the worker's task
run in-process with the real trainer on a tiny model (a few CPU seconds)."""

from __future__ import annotations

import threading

import pytest

from tests.e2e.conftest import demo_jsonl, install_model, tiny_model  # noqa: F401 - fixture
from worker.config import WorkerSettings
from worker.tasks import execute_job

QUICK = {"estimator": "grpo", "reward": "exact", "batch_size": 2, "rollouts_per_prompt": 2,
         "max_steps": 3, "n0": 0, "sampling": {"max_new_tokens": 4}, "eval_every": 0,
         "eval_size": 4, "checkpoint_every": 0, "reward_workers": 0, "samples_per_step": 3}


@pytest.fixture
def trained(client, app, settings, alice, tiny_model):  # noqa: F811 - the imported fixture
    """`trained(**config)` -> the finished job's JSON, run through the worker's task."""
    install_model(tiny_model, settings.model_roots[0], "tiny-real")
    upload = client.post("/v1/datasets", headers=alice,
                         files={"file": ("arith.jsonl", demo_jsonl(24), "application/jsonl")})
    assert upload.status_code == 201, upload.text

    def run(**config):
        created = client.post("/v1/jobs", headers=alice, json={
            "dataset_id": upload.json()["id"], "model": "tiny-real", "config": {**QUICK, **config}})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        execute_job(job_id, engine=app.state.engine, settings=settings,
                    worker_settings=WorkerSettings(), stop=threading.Event())
        return client.get(f"/v1/jobs/{job_id}", headers=alice).json()

    return run


def test_finished_job_serves_samples_and_step_lines(client, alice, bob, trained):
    job = trained()
    assert job["status"] == "succeeded", job
    url = f"/v1/jobs/{job['id']}"

    page = client.get(f"{url}/samples", headers=alice, params={"step": 1}).json()
    assert len(page["data"]) == 3 and not page["has_more"]
    for sample in page["data"]:
        assert sample["step"] == 1 and sample["prompt"] and "=" in sample["prompt"]
        assert isinstance(sample["completion"], str) and sample["answer"]
        assert sample["reward"] in (0.0, 1.0) and isinstance(sample["advantage"], float)
        assert sample["finish_reason"] in ("stop", "length")
    everything = client.get(f"{url}/samples", headers=alice, params={"limit": 4}).json()
    assert everything["has_more"] and len(everything["data"]) == 4
    rest = client.get(f"{url}/samples", headers=alice,
                      params={"after": everything["next_cursor"]}).json()["data"]
    assert sorted({s["step"] for s in everything["data"] + rest}) == [1, 2, 3]
    assert len(everything["data"]) + len(rest) == 9
    assert client.get(f"{url}/samples", headers=bob).status_code == 404

    logs = client.get(f"{url}/logs", headers=alice).json()["data"]
    steps = [line["line"] for line in logs if line["kind"] == "progress"]
    assert len(steps) == 4  # step 0 (initial eval) and 1..3
    assert "step 2/3 reward=" in steps[2] and " acc=" in steps[2] and " eta " in steps[2]
    assert "finished 3 steps" in logs[-1]["line"]
    newer = client.get(f"{url}/logs", headers=alice, params={"after": logs[-2]["id"]}).json()["data"]
    assert [line["id"] for line in newer] == [logs[-1]["id"]]
    # The lifecycle record stays free of per-step lines.
    events = client.get(f"{url}/events", headers=alice).json()["data"]
    assert events and all(e["kind"] != "progress" for e in events)


def test_unscorable_rewards_warn_then_fail_the_job_naming_the_cause(client, alice, trained):
    job = trained(reward="choice", unscorable_fail_steps=2, max_steps=5)
    assert job["status"] == "failed" and job["current_step"] < 5
    assert "unscorable for 2 steps" in job["error"] and "reward 'choice'" in job["error"]
    logs = client.get(f"/v1/jobs/{job['id']}/logs", headers=alice).json()["data"]
    warning = next(line for line in logs if line["kind"] == "warning")
    assert warning["level"] == "warning"
    assert "100% of the rewards at step 1 are unscorable" in warning["line"]
    assert "expected answer" in warning["line"]
    samples = client.get(f"/v1/jobs/{job['id']}/samples", headers=alice).json()["data"]
    assert samples and all(s["reward"] is None for s in samples)


def test_cli_shows_samples_logs_and_the_summary(client, alice, trained, monkeypatch, capsys):
    from cli.main import main
    from core.settings import get_settings

    job = trained(eval_every=2)
    monkeypatch.setenv("BASIS_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    get_settings.cache_clear()

    def basis(*argv):
        status = main(list(argv), http=client)
        out = capsys.readouterr()
        return status, out.out, out.err

    status, out, _ = basis("jobs", "samples", job["id"], "--step", "2")
    assert status == 0 and out.count("step 2 #") == 3 and "completion: " in out
    status, out, _ = basis("jobs", "logs", job["id"], "--follow", "--interval", "0")
    assert status == 0 and "step 3/3 reward=" in out
    assert f"{job['id']} succeeded: held-out accuracy " in out and ", 3 steps, training " in out
    status, out, err = basis("jobs", "get", job["id"])
    assert status == 0 and '"status": "succeeded"' in out and "held-out accuracy" in err


def test_cli_help_lists_every_subcommand_and_a_missing_key_names_the_variable(
        client, monkeypatch, capsys):
    from cli.main import build_parser, main

    helps = {}
    for group in ("datasets", "jobs", "models"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([group, "--help"])
        helps[group] = capsys.readouterr().out
    for group, actions in {"datasets": ["upload", "list", "get", "delete"],
                           "jobs": ["create", "list", "get", "cancel", "retry", "delete", "logs",
                                    "samples"],
                           "models": ["list"]}.items():
        for action in actions:
            assert f"    {action} " in helps[group], (group, action, helps[group])
    monkeypatch.delenv("BASIS_API_KEY", raising=False)
    assert main(["jobs", "list"], http=client) == 1
    assert "set BASIS_API_KEY" in capsys.readouterr().err
