"""Evaluations through the API: the app on a real database (SQLite and PostgreSQL), the worker's task
run in-process with the real trainer on a tiny model, no mocks."""

from __future__ import annotations

import json
import threading
import time

import pytest

from core.models import Job
from tests.e2e.conftest import demo_jsonl, install_model, tiny_model  # noqa: F401 - fixture
from worker.config import WorkerSettings
from worker.tasks import execute_job

QUICK = {"reward": "exact", "max_new_tokens": 4, "reward_workers": 0}


@pytest.fixture
def arith(client, settings, alice, tiny_model):  # noqa: F811 - the imported fixture
    """Alice's 24-row arithmetic dataset id; the tiny model installed as `tiny-real`."""
    install_model(tiny_model, settings.model_roots[0], "tiny-real")
    upload = client.post("/v1/datasets", headers=alice,
                         files={"file": ("arith.jsonl", demo_jsonl(24), "application/jsonl")})
    assert upload.status_code == 201, upload.text
    return upload.json()["id"]


def run(app, settings, eval_id: str) -> str:
    return execute_job(eval_id, engine=app.state.engine, settings=settings,
                       worker_settings=WorkerSettings(), stop=threading.Event())


def test_an_evaluation_runs_on_the_worker_and_reports_results_and_samples(
        client, app, settings, alice, arith, enqueued):
    created = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, **QUICK, "samples_per_prompt": 4,
        "temperature": 1.0, "max_rows": 10, "batch_rows": 4, "seed": 3})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("eval_") and body["object"] == "eval"
    assert body["status"] == "queued" and body["results"] is None and body["max_steps"] == 3
    assert body["config"]["samples_per_prompt"] == 4 and body["config"]["top_p"] == 1.0
    assert "model" not in body["config"] and "dataset" not in body["config"]
    assert enqueued[-1] == (body["id"], "gpu", True)  # sent after its row was committed

    assert run(app, settings, body["id"]) == "succeeded"
    done = client.get(f"/v1/evals/{body['id']}", headers=alice).json()
    assert done["status"] == "succeeded" and done["current_step"] == 3
    results = done["results"]
    assert (results["rows"], results["samples_per_prompt"], results["samples"]) == (10, 4, 40)
    assert list(results["pass_at_k"]) == ["1", "2", "4"]
    assert results["pass_at_k"]["1"] == pytest.approx(results["accuracy"])
    assert 0 <= results["accuracy"] <= results["pass_at_k"]["4"] <= 1
    assert 0 < results["mean_response_tokens"] <= 4 and results["unscorable_frac"] == 0

    page = client.get(f"/v1/evals/{body['id']}/samples", headers=alice, params={"limit": 30}).json()
    assert page["has_more"] and len(page["data"]) == 30
    rest = client.get(f"/v1/evals/{body['id']}/samples", headers=alice,
                      params={"after": page["next_cursor"]}).json()
    samples = page["data"] + rest["data"]
    assert not rest["has_more"] and len(samples) == 40
    assert [(s["row"], s["sample"]) for s in samples] == [(r, j) for r in range(10) for j in range(4)]
    assert sum(s["reward"] >= 1 for s in samples) / 40 == pytest.approx(results["accuracy"])
    assert all(s["object"] == "eval_sample" and s["eval_id"] == body["id"] and s["prompt"]
               and s["finish_reason"] in ("stop", "length") for s in samples)
    row = client.get(f"/v1/evals/{body['id']}/samples", headers=alice, params={"row": 7}).json()
    assert [(s["row"], s["sample"]) for s in row["data"]] == [(7, j) for j in range(4)]
    assert row["data"][0]["answer"] == samples[28]["answer"]

    # The job lifecycle, events included (no per-batch progress rows among them).
    events = client.get(f"/v1/evals/{body['id']}/events", headers=alice).json()["data"]
    statuses = [e["data"]["status"] for e in events if e["kind"] == "status"]
    assert statuses == ["queued", "starting", "running", "succeeded"]
    assert "accuracy" in events[-1]["message"] and events[-1]["data"]["eval/rows"] == 10
    assert all(e["kind"] != "progress" and e["job_id"] == body["id"] for e in events)
    page = client.get(f"/v1/evals/{body['id']}/events", headers=alice, params={"limit": 2}).json()
    assert page["has_more"] and len(page["data"]) == 2


def test_evals_and_jobs_are_kept_apart_and_owned(client, app, alice, bob, arith, create_job):
    evaluation = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, **QUICK}).json()
    job = create_job(alice, arith)
    assert job.status_code == 201, job.text
    job = job.json()
    assert [e["id"] for e in client.get("/v1/evals", headers=alice).json()["data"]] == [evaluation["id"]]
    assert [j["id"] for j in client.get("/v1/jobs", headers=alice).json()["data"]] == [job["id"]]
    for url in (f"/v1/jobs/{evaluation['id']}", f"/v1/jobs/{evaluation['id']}/metrics",
                f"/v1/jobs/{evaluation['id']}/samples", f"/v1/jobs/{evaluation['id']}/events",
                f"/v1/evals/{job['id']}", f"/v1/evals/{job['id']}/samples",
                f"/v1/evals/{job['id']}/events"):
        response = client.get(url, headers=alice)
        assert response.status_code == 404, url
    assert client.post(f"/v1/jobs/{evaluation['id']}/cancel", headers=alice).status_code == 404
    assert client.post(f"/v1/evals/{job['id']}/cancel", headers=alice).status_code == 404
    assert client.post(f"/v1/evals/{job['id']}/retry", headers=alice).status_code == 404
    assert client.delete(f"/v1/evals/{job['id']}", headers=alice).status_code == 404
    assert client.post(f"/v1/jobs/{evaluation['id']}/retry", headers=alice).status_code == 404
    # Another user's evaluation is a missing one, on every route.
    for method, url in [("GET", f"/v1/evals/{evaluation['id']}"),
                        ("GET", f"/v1/evals/{evaluation['id']}/samples"),
                        ("GET", f"/v1/evals/{evaluation['id']}/events"),
                        ("POST", f"/v1/evals/{evaluation['id']}/retry"),
                        ("DELETE", f"/v1/evals/{evaluation['id']}"),
                        ("POST", f"/v1/evals/{evaluation['id']}/cancel")]:
        response = client.request(method, url, headers=bob)
        assert response.status_code == 404 and response.json()["error"]["param"] == "eval_id"
    assert client.get("/v1/evals", headers=bob).json()["data"] == []
    # ... and so is evaluating on another user's dataset.
    response = client.post("/v1/evals", headers=bob, json={"model": "tiny-real", "dataset_id": arith})
    assert response.status_code == 404 and response.json()["error"]["param"] == "dataset_id"
    with app.state.sessionmaker() as session:
        assert session.get(Job, evaluation["id"]).status == "queued"


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"samples_per_prompt": 0}, 422, "samples_per_prompt"),
    ({"samples_per_prompt": 4}, 422, "samples_per_prompt"),  # k > 1 at temperature 0
    ({"temperature": -1}, 422, "temperature"),
    ({"max_new_tokens": 10**9}, 422, "max_new_tokens"),
    ({"max_new_tokens": 5000}, 422, "max_new_tokens"),  # the server's job_max_new_tokens
    ({"max_rows": 0}, 422, "max_rows"),
    ({"reward": "nope"}, 422, "reward"),
    ({"reward": "numeric", "reward_options": {"rel_tol": "x"}}, 422, "reward_options"),
    ({"reward_options": {"unparsed": float("nan")}}, 422, "reward_options.unparsed"),
    ({"engine": "nope"}, 422, "engine"),
    ({"engine_options": {"no_such_option": 1}}, 422, "engine_options.no_such_option"),
    ({"unknown_field": 1}, 422, "unknown_field"),
    ({"model": "../etc"}, 422, "model"),
    ({"model": "no-such-model"}, 404, "model"),
    ({"dataset_id": "ds_missing"}, 404, "dataset_id"),
    ({"queue": "nowhere"}, 422, "queue"),
    ({"device": "tpu"}, 422, "device"),
    ({"samples_per_prompt": 64, "temperature": 1, "batch_rows": 100}, 422, "batch_rows"),
])
def test_bad_evaluations_are_refused_naming_the_field(client, app, alice, arith, body, status, param):
    payload = {"model": "tiny-real", "dataset_id": arith, **body}
    if any(isinstance(v, float) and v != v for v in body.get("reward_options", {}).values()):
        response = client.post("/v1/evals", headers={**alice, "Content-Type": "application/json"},
                               content=json.dumps(payload))
    else:
        response = client.post("/v1/evals", headers=alice, json=payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param, response.text
    with app.state.sessionmaker() as session:
        assert session.query(Job).count() == 0  # nothing half written


def test_too_many_samples_are_refused(client, settings, alice, arith):
    settings.eval_max_samples = 50
    response = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, "samples_per_prompt": 4, "temperature": 1})
    assert response.status_code == 422 and response.json()["error"]["param"] == "max_rows"
    message = response.json()["error"]["message"]
    # It says what to do: the largest max_rows that fits, and that k can go down instead.
    assert "24 rows x 4 samples_per_prompt = 96 samples" in message, message
    assert "set max_rows to at most 12 or ask for fewer samples_per_prompt" in message, message


def test_an_engine_no_live_worker_offers_names_the_evaluations_own_field(client, app, alice, arith):
    """An evaluation's `engine` is a top-level field, not a training job's `config.engine`."""
    from core import workers

    info = workers.WorkerInfo(id="gpu-1@a", hostname="host", pid=1, queues=["gpu"], engines=["hf"],
                              gpus=0, max_processes=2)
    with app.state.engine.begin() as conn:
        workers.beat(conn, info)
    response = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, "engine": "vllm"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "engine" and "no live worker offers engine 'vllm'" in error["message"]
    with app.state.sessionmaker() as session:
        assert session.query(Job).count() == 0


def test_cancel_a_queued_then_a_running_evaluation(client, app, settings, alice, arith):
    queued = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, **QUICK}).json()
    cancelled = client.post(f"/v1/evals/{queued['id']}/cancel", headers=alice)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert run(app, settings, queued["id"]) == "cancelled"  # a late delivery does nothing
    again = client.post(f"/v1/evals/{queued['id']}/cancel", headers=alice)
    assert again.status_code == 200

    running = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, **QUICK, "batch_rows": 1}).json()
    assert running["max_steps"] == 24
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(run(app, settings, running["id"])))
    worker.start()
    deadline = time.monotonic() + 120
    while client.get(f"/v1/evals/{running['id']}", headers=alice).json()["current_step"] < 2:
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.02)
    assert client.post(f"/v1/evals/{running['id']}/cancel", headers=alice).json()["cancel_requested"]
    worker.join(120)
    done = client.get(f"/v1/evals/{running['id']}", headers=alice).json()
    assert outcome == ["cancelled"] and done["status"] == "cancelled"
    assert 2 <= done["current_step"] < 24 and done["results"]["rows"] == done["current_step"]
    finished = client.post(f"/v1/evals/{running['id']}/cancel", headers=alice)
    assert finished.status_code == 200  # cancelling a cancelled evaluation is a no-op

    # Retry: back to queued with its partial results cleared, then run again from the first row.
    retried = client.post(f"/v1/evals/{running['id']}/retry", headers=alice)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued" and retried.json()["results"] is None
    assert retried.json()["current_step"] == 0
    assert client.get(f"/v1/evals/{running['id']}/samples", headers=alice).json()["data"] == []
    assert run(app, settings, running["id"]) == "succeeded"
    again = client.get(f"/v1/evals/{running['id']}", headers=alice).json()
    assert again["results"]["rows"] == 24 and again["current_step"] == 24
    events = client.get(f"/v1/evals/{running['id']}/events", headers=alice).json()["data"]
    assert any(e["kind"] == "start_over" for e in events)
    conflict = client.post(f"/v1/evals/{running['id']}/retry", headers=alice)
    assert conflict.status_code == 409 and conflict.json()["error"]["param"] == "eval_id"
    assert "only failed or cancelled evaluations can be retried" in conflict.json()["error"]["message"]

    # Delete: a finished evaluation goes with its samples; an active one must be cancelled first.
    active = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, **QUICK}).json()
    refused = client.delete(f"/v1/evals/{active['id']}", headers=alice)
    assert refused.status_code == 409 and "POST /v1/evals/" in refused.json()["error"]["message"]
    assert client.delete(f"/v1/jobs/{running['id']}", headers=alice).status_code == 404
    assert client.delete(f"/v1/evals/{running['id']}", headers=alice).status_code == 204
    assert client.get(f"/v1/evals/{running['id']}", headers=alice).status_code == 404
    with app.state.sessionmaker() as session:
        from core.models import RolloutSample

        assert session.query(RolloutSample).filter_by(job_id=running["id"]).count() == 0


def test_an_evaluation_of_a_model_that_fails_to_load_fails_with_the_reason(
        client, app, settings, alice, arith):
    broken = settings.model_roots[0] / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "qwen2"}')
    created = client.post("/v1/evals", headers=alice, json={
        "model": "broken", "dataset_id": arith, **QUICK}).json()
    assert run(app, settings, created["id"]) == "failed"
    failed = client.get(f"/v1/evals/{created['id']}", headers=alice).json()
    assert failed["status"] == "failed" and "could not load" in failed["error"]
    assert "<models>" in failed["error"] and str(settings.model_roots[0]) not in failed["error"]


def test_the_basis_evals_commands(client, app, settings, alice, arith, monkeypatch, capsys):
    from cli.main import main
    from core.settings import get_settings

    monkeypatch.setenv("BASIS_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    get_settings.cache_clear()

    def basis(*argv: str):
        status = main(list(argv), http=client)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    status, out, err = basis("evals", "create", "--model", "tiny-real", "--dataset", arith,
                             "--reward", "exact", "-k", "2", "--temperature", "0.7",
                             "--max-new-tokens", "4", "--max-rows", "6", "--set", "reward_workers=0")
    assert status == 0, err
    created = json.loads(out)
    assert created["config"]["samples_per_prompt"] == 2 and created["config"]["reward_workers"] == 0
    assert created["id"] in basis("evals", "list")[1]
    status, out, err = basis("evals", "get", created["id"])
    assert json.loads(out)["status"] == "queued" and "no rows evaluated yet" in err

    assert run(app, settings, created["id"]) == "succeeded"
    status, out, err = basis("evals", "get", created["id"])
    assert status == 0 and f"{created['id']} succeeded: tiny-real on {arith}, 6 rows x 2" in err
    assert "pass@1 " in err and "pass@2 " in err
    listed = basis("evals", "list", "--status", "succeeded")[1]
    assert created["id"] in listed and "6 rows x 2" in listed
    status, out, _ = basis("evals", "samples", created["id"], "--row", "5")
    assert status == 0 and out.count("row 5 #") == 2 and "completion:" in out
    status, out, err = basis("evals", "samples", created["id"], "--row", "6")  # past the last row
    assert status == 0 and out == "" and "no samples for row 6: the evaluation has rows 0 to 5" in err
    samples = json.loads(basis("evals", "samples", created["id"], "--json")[1])
    assert len(samples) == 12
    status, out, _ = basis("evals", "events", created["id"])
    assert status == 0 and "status running -> succeeded: evaluated 6 rows x 2" in out

    status, out, err = basis("evals", "create", "--model", "tiny-real", "--dataset", arith, "-k", "3")
    assert status == 1 and "samples_per_prompt" in err and "temperature" in err
    other = json.loads(basis("evals", "create", "--model", "tiny-real", "--dataset", arith)[1])
    assert json.loads(basis("evals", "cancel", other["id"])[1])["status"] == "cancelled"
    assert json.loads(basis("evals", "retry", other["id"])[1])["status"] == "queued"
    assert json.loads(basis("evals", "cancel", other["id"])[1])["status"] == "cancelled"
    assert basis("evals", "delete", other["id"])[1].startswith(f"deleted evaluation {other['id']}")
    assert other["id"] not in basis("evals", "list")[1]
    assert basis("evals", "get", "eval_nope")[0] == 1
    get_settings.cache_clear()


def test_an_evaluation_may_use_only_models_its_owner_sees(client, settings, alice, bob, arith, app):
    """Bob's exported model (a `model_records` row he owns) is his alone: alice's evaluation of it
    is refused as an unknown model, and nothing is created."""
    from core.db import session_scope
    from core.models import ModelRecord, User

    install_model_dir = settings.model_roots[0] / "ft" / "bobs-model"
    install_model_dir.mkdir(parents=True)
    (install_model_dir / "config.json").write_text('{"model_type": "qwen2"}')
    client.get("/v1/models", headers=bob)  # bob's user row exists once he has called
    with session_scope(app.state.engine) as session:
        bob_id = session.query(User).filter_by(name="bob").one().id
        session.add(ModelRecord(name="ft/bobs-model", owner_id=bob_id, source="export",
                                source_ref="job_x/ckpt_x", format="full", path="ft/bobs-model",
                                bytes=24))
    response = client.post("/v1/evals", headers=alice, json={"model": "ft/bobs-model",
                                                             "dataset_id": arith})
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"
    assert client.get("/v1/evals", headers=alice).json()["data"] == []


@pytest.fixture(scope="module")
def warm_model(tmp_path_factory):
    """A tiny model warm-started on the sum table: it gets a few answers right, so training has
    something to sharpen and an evaluation something to count."""
    import torch

    from trainer.tasks import generate_arithmetic
    from trainer.tiny import build_tiny_model
    from trainer.warmstart import warm_start

    torch.set_num_threads(1)
    model = build_tiny_model(tmp_path_factory.mktemp("warm") / "model", layers=1, hidden=64,
                             heads=2, seed=0)
    warm_start(model, rows=generate_arithmetic(64, seed=0, levels=[0]), steps=60, batch_size=16,
               lr=1e-2, seed=1)
    return model


def test_base_and_fine_tuned_models_evaluated_side_by_side(client, app, settings, alice,
                                                          warm_model):
    """Train a short job on the worker, then evaluate the base model and the job's
    `fine_tuned_model` on the same rows: both succeed and report accuracy, the fine-tuned one
    higher (sampled accuracy over 8 samples a row, fixed seeds, one CPU thread)."""
    import shutil

    from trainer.tasks import generate_arithmetic

    shutil.copytree(warm_model, settings.model_roots[0] / "warm")
    rows = "".join(json.dumps(r) + "\n" for r in generate_arithmetic(36, seed=5, levels=[0]))
    dataset = client.post("/v1/datasets", headers=alice, files={
        "file": ("sums.jsonl", rows.encode(), "application/jsonl")}).json()["id"]
    job = client.post("/v1/jobs", headers=alice, json={"dataset_id": dataset, "model": "warm", "config": {
        "estimator": "grpo", "rollouts_per_prompt": 4, "batch_size": 8, "n0": 0, "max_steps": 30,
        "reward": "exact", "sampling": {"max_new_tokens": 4}, "eval_every": 0, "reward_workers": 0,
        "optimizer": {"lr": 3e-3, "micro_batch_size": 32}, "checkpoint_every": 0,
        "device": "cpu", "cpu_threads": 1, "seed": 1}})
    assert job.status_code == 201, job.text
    assert run(app, settings, job.json()["id"]) == "succeeded"
    tuned = client.get(f"/v1/jobs/{job.json()['id']}", headers=alice).json()["fine_tuned_model"]
    assert tuned and tuned in [m["id"] for m in client.get("/v1/models", headers=alice).json()["data"]]

    results = {}
    for model in ("warm", tuned):
        created = client.post("/v1/evals", headers=alice, json={
            "model": model, "dataset_id": dataset, **QUICK, "samples_per_prompt": 8,
            "temperature": 1.0, "seed": 0, "cpu_threads": 1, "device": "cpu"})
        assert created.status_code == 201, created.text
        assert run(app, settings, created.json()["id"]) == "succeeded"
        results[model] = client.get(f"/v1/evals/{created.json()['id']}", headers=alice).json()["results"]
    base, fine_tuned = results["warm"], results[tuned]
    assert base["rows"] == fine_tuned["rows"] == 36 and base["samples"] == 288
    print(f"\nFIGURES base vs fine-tuned accuracy: {base['accuracy']:.4f} -> "
          f"{fine_tuned['accuracy']:.4f}, pass@8 {base['pass_at_k']['8']:.3f} -> "
          f"{fine_tuned['pass_at_k']['8']:.3f}")
    assert fine_tuned["accuracy"] > base["accuracy"]


def test_an_evaluation_takes_the_reward_and_length_its_model_recommends(client, settings, alice, arith):
    """A model's training defaults (basis_defaults.json) give an evaluation that leaves them out its
    reward and max_new_tokens, as they give a job: `basis evals create --model tiny-arith` scores
    the demo model by exact match over 8 tokens, as its jobs' held-out eval does."""
    from trainer.model_defaults import write_model_defaults

    write_model_defaults(settings.model_roots[0] / "tiny-real", {
        "reward": "numeric", "reward_options": {"rel_tol": 0.01}, "sampling": {"max_new_tokens": 8},
        "optimizer": {"lr": 5e-4}}, "test recipe")
    plain = client.post("/v1/evals", headers=alice, json={"model": "tiny-real", "dataset_id": arith})
    assert plain.status_code == 201, plain.text
    config = plain.json()["config"]
    assert (config["reward"], config["reward_options"], config["max_new_tokens"], config["temperature"]) == (
        "numeric", {"rel_tol": 0.01}, 8, 0.0)
    # What the request says wins, and another reward does not inherit the model's reward options.
    mine = client.post("/v1/evals", headers=alice, json={
        "model": "tiny-real", "dataset_id": arith, "reward": "exact", "max_new_tokens": 5})
    assert mine.status_code == 201, mine.text
    config = mine.json()["config"]
    assert (config["reward"], config["reward_options"], config["max_new_tokens"]) == ("exact", {}, 5)


def test_evals_create_wait_prints_each_status_and_batch(client, alice, arith, monkeypatch, capsys):
    """`basis evals create --wait` says when a queued evaluation starts and how far it is, not
    minutes of silence behind a training job on the same worker (the polled states are the API's
    own objects at the points a worker would leave them)."""
    import argparse

    from cli import rest
    from client import BasisClient

    api = BasisClient(http=client, api_key=alice["Authorization"].removeprefix("Bearer "))
    queued = api.create_eval(model="tiny-real", dataset_id=arith, **QUICK)
    states = [queued, queued.model_copy(update={"status": "running", "max_steps": 2}),
              queued.model_copy(update={"status": "running", "current_step": 1, "max_steps": 2}),
              queued.model_copy(update={"status": "running", "current_step": 1, "max_steps": 2}),
              queued.model_copy(update={"status": "succeeded", "current_step": 2, "max_steps": 2})]

    class Polled:
        def create_eval(self, **_):
            return queued

        def get_eval(self, eval_id):
            assert eval_id == queued.id
            return states.pop(0)

    monkeypatch.setattr(rest.time, "sleep", lambda _: None)
    args = argparse.Namespace(config=None, set=None, model="tiny-real", dataset=arith, queue=None,
                              wait=True, interval=0, **{name: None for name in rest.EVAL_FLAGS})
    rest.evals_create(args, Polled())
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [f"{queued.id} queued", f"{queued.id} running, batch 0/2",
                       f"{queued.id} running, batch 1/2"], err
    assert err[3].startswith(f"{queued.id} succeeded") and len(err) == 4, err
