"""A model's recommended defaults (its basis_defaults.json) through the API: listed with the model,
applied to the fields a job's config leaves out, recorded in the job, and blamed in errors."""

from __future__ import annotations

from trainer.model_defaults import DEFAULTS_FILE, write_model_defaults

DEFAULTS = {"optimizer": {"lr": 5e-4, "warmup_steps": 5}, "max_steps": 7, "reward": "exact"}


def test_models_list_their_defaults(client, alice, model_dir, settings):
    other = settings.model_roots[0] / "plain"
    other.mkdir()
    (other / "config.json").write_text("{}")
    write_model_defaults(model_dir, DEFAULTS, "small model")
    listed = {m["id"]: m["config_defaults"] for m in client.get("/v1/models", headers=alice).json()["data"]}
    assert listed == {"plain": {}, "tiny": DEFAULTS}


def test_a_job_gets_the_models_defaults_for_what_it_leaves_out(client, alice, dataset, model_dir):
    write_model_defaults(model_dir, DEFAULTS, "small model")
    response = client.post("/v1/jobs", headers=alice, json={
        "dataset_id": dataset["id"], "model": "tiny",
        "config": {"batch_size": 2, "optimizer": {"warmup_steps": 0}}})
    assert response.status_code == 201, response.text
    job = response.json()
    config = job["config"]
    assert config["optimizer"]["lr"] == 5e-4 and config["optimizer"]["warmup_steps"] == 0
    assert config["reward"] == "exact" and job["max_steps"] == config["max_steps"] == 7
    assert config["optimizer"]["grad_clip"] == 1.0  # the generic default where neither sets it
    events = client.get(f"/v1/jobs/{job['id']}/events", headers=alice).json()["data"]
    assert "model tiny's defaults set optimizer.lr, max_steps, reward" in events[0]["message"]

    # Without a sidecar the generic defaults apply, as before.
    (model_dir / DEFAULTS_FILE).unlink()
    plain = client.post("/v1/jobs", headers=alice, json={
        "dataset_id": dataset["id"], "model": "tiny", "config": {"batch_size": 2}}).json()
    assert plain["config"]["optimizer"]["lr"] == 1e-6 and plain["max_steps"] == 100


def test_an_error_in_a_models_default_says_it_is_one(client, alice, dataset, model_dir, db):
    from core.models import Job

    write_model_defaults(model_dir, {"batch_size": 256}, "too big for five rows")
    response = client.post("/v1/jobs", headers=alice, json={
        "dataset_id": dataset["id"], "model": "tiny", "config": {}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "config.batch_size"
    assert "model 'tiny''s default" in error["message"] and "set config.batch_size" in error["message"]
    (model_dir / DEFAULTS_FILE).write_text('{"config": {"run_dir": "/tmp"}}')
    response = client.post("/v1/jobs", headers=alice, json={
        "dataset_id": dataset["id"], "model": "tiny", "config": {"batch_size": 2}})
    assert response.status_code == 422 and response.json()["error"]["param"] == "model"
    assert "unusable training defaults" in response.json()["error"]["message"]
    assert db.query(Job).count() == 0
