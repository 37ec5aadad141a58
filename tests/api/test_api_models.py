"""The model catalogue per user: the directory scan, shared records and owned exports, and DELETE.

Records are inserted as the export and pull services write them (a directory under the first models
root plus a row); the export itself is tested in tests/worker/test_export.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select, update

from core.models import Job, ModelRecord, User


def _record(app, settings, name: str, *, owner: str | None, source: str = "export",
            fmt: str = "full", base: str | None = "tiny") -> None:
    path = settings.model_roots[0] / name
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    with app.state.sessionmaker() as session:
        owner_id = session.scalar(select(User.id).where(User.name == owner)) if owner else None
        session.add(ModelRecord(name=name, owner_id=owner_id, source=source, source_ref="x",
                                format=fmt, path=name, bytes=40, base_model=base,
                                architecture="Qwen2ForCausalLM", parameter_count=7))
        session.commit()


def _names(client, headers) -> list[str]:
    response = client.get("/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["data"]]


def test_an_export_is_its_owners_alone(client, app, settings, model_dir, alice, bob, dataset, create_job):
    _record(app, settings, "ft/alice-1", owner="alice")
    _record(app, settings, "org/shared", owner=None, source="hub", base=None)
    assert _names(client, alice) == ["ft/alice-1", "org/shared", "tiny"]
    assert _names(client, bob) == ["org/shared", "tiny"]  # the scan does not list alice's directory

    mine = client.get("/v1/models/ft/alice-1", headers=alice).json()
    assert (mine["source"], mine["owned"], mine["owned_by"], mine["format"]) == ("export", True, "you", "full")
    assert (mine["base_model"], mine["parameter_count"], mine["bytes"]) == ("tiny", 7, 40)
    theirs = client.get("/v1/models/ft/alice-1", headers=bob)
    unknown = client.get("/v1/models/ft/nobody-1", headers=bob)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"] == {**unknown.json()["error"],
                                      "message": unknown.json()["error"]["message"].replace("nobody", "alice")}
    assert "ft/alice-1" not in client.get("/v1/models", headers=bob).text

    # Using it: alice may train on it, bob gets the same 404 as for a model that does not exist.
    assert create_job(alice, dataset["id"], model="ft/alice-1").status_code == 201
    bob_data = client.post("/v1/datasets", headers=bob,
                           files={"file": ("b.jsonl", b'{"prompt": "1+1", "answer": "2"}\n' * 5)}).json()
    refused = create_job(bob, bob_data["id"], model="ft/alice-1")
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "model"
    assert client.delete("/v1/models/ft/alice-1", headers=bob).status_code == 404
    assert (settings.model_roots[0] / "ft" / "alice-1").is_dir()


def test_local_models_are_described_from_their_files(client, settings, model_dir, alice):
    (model_dir / "tokenizer_config.json").write_text('{"chat_template": "{{ x }}"}')
    tiny = client.get("/v1/models/tiny", headers=alice).json()
    assert (tiny["source"], tiny["owned"], tiny["format"], tiny["chat_template"]) == ("local", False, "full", True)
    assert tiny["architecture"] == "qwen2" and tiny["bytes"] > 0 and tiny["revision"] is None
    bad = client.get("/v1/models/..%2F..%2Fetc", headers=alice)
    assert bad.status_code in (404, 422)


def test_delete_rules(client, app, settings, model_dir, alice, bob, dataset, create_job):
    _record(app, settings, "ft/alice-1", owner="alice")
    _record(app, settings, "org/shared", owner=None, source="hub", base=None)

    hand_copied = client.delete("/v1/models/tiny", headers=alice)
    assert hand_copied.status_code == 403 and hand_copied.json()["error"]["code"] == "forbidden"
    shared = client.delete("/v1/models/org/shared", headers=alice)
    assert shared.status_code == 403 and "admin" in shared.json()["error"]["message"]

    job = create_job(alice, dataset["id"], model="ft/alice-1").json()
    busy = client.delete("/v1/models/ft/alice-1", headers=alice)
    assert busy.status_code == 409 and job["id"] in busy.json()["error"]["message"]
    with app.state.sessionmaker() as session:
        session.execute(update(Job).where(Job.id == job["id"]).values(status="succeeded"))
        session.commit()
    assert client.delete("/v1/models/ft/alice-1", headers=alice).status_code == 204
    assert not (settings.model_roots[0] / "ft" / "alice-1").exists()
    assert [p.name for p in (settings.model_roots[0] / "ft").iterdir()] == []  # no hidden leftover
    assert client.get("/v1/models/ft/alice-1", headers=alice).status_code == 404

    with app.state.sessionmaker() as session:
        session.execute(update(User).where(User.name == "bob").values(is_admin=True))
        session.commit()
    assert client.delete("/v1/models/org/shared", headers=bob).status_code == 204
    with app.state.sessionmaker() as session:
        assert session.scalars(select(ModelRecord.name)).all() == []
    assert _names(client, alice) == ["tiny"]


def test_a_base_with_an_adapter_on_it_is_not_deleted(client, app, settings, model_dir, alice):
    _record(app, settings, "ft/base-1", owner="alice")
    _record(app, settings, "ft/adapter-1", owner="alice", fmt="adapter", base="ft/base-1")
    refused = client.delete("/v1/models/ft/base-1", headers=alice)
    assert refused.status_code == 409 and "adapter" in refused.json()["error"]["message"]
    assert client.delete("/v1/models/ft/adapter-1", headers=alice).status_code == 204
    assert client.delete("/v1/models/ft/base-1", headers=alice).status_code == 204


def test_deleting_an_export_clears_it_from_the_job_that_produced_it(client, app, settings, model_dir,
                                                                   alice, dataset, create_job):
    """GET /v1/jobs/{id} never names a deleted model: `fine_tuned_model` goes back to null in the
    delete's transaction, and a `model_deleted` event keeps the name."""
    _record(app, settings, "ft/made-1", owner="alice")
    _record(app, settings, "ft/adapter-1", owner="alice", fmt="adapter", base="ft/made-1")
    _record(app, settings, "ft/other-1", owner="alice")
    made = create_job(alice, dataset["id"]).json()["id"]
    other = create_job(alice, dataset["id"]).json()["id"]
    with app.state.sessionmaker() as session:
        for job_id, name in ((made, "ft/made-1"), (other, "ft/other-1")):
            session.execute(update(Job).where(Job.id == job_id)
                            .values(status="succeeded", fine_tuned_model=name))
        session.commit()

    # A refused delete changes no job.
    assert client.delete("/v1/models/ft/made-1", headers=alice).status_code == 409
    assert client.get(f"/v1/jobs/{made}", headers=alice).json()["fine_tuned_model"] == "ft/made-1"

    assert client.delete("/v1/models/ft/adapter-1", headers=alice).status_code == 204
    assert client.delete("/v1/models/ft/made-1", headers=alice).status_code == 204
    assert client.get(f"/v1/jobs/{made}", headers=alice).json()["fine_tuned_model"] is None
    assert client.get(f"/v1/jobs/{other}", headers=alice).json()["fine_tuned_model"] == "ft/other-1"
    events = client.get(f"/v1/jobs/{made}/events", headers=alice).json()["data"]
    deleted = [e for e in events if e["kind"] == "model_deleted"]
    assert len(deleted) == 1 and deleted[0]["data"] == {"fine_tuned_model": "ft/made-1"}
    assert "ft/made-1" in deleted[0]["message"]
    other_events = client.get(f"/v1/jobs/{other}/events", headers=alice).json()["data"]
    assert "model_deleted" not in {e["kind"] for e in other_events}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("api-export") / "tiny", layers=1, hidden=64, heads=2)


def _full_checkpoint(app, settings, job_id: str, tiny_weights, step: int = 1) -> str:
    """A full fine-tune checkpoint as the trainer lays it out (`model/`, `state.json`) and its row."""
    from core.models import Checkpoint, new_id

    ckpt = settings.job_run_dir(job_id) / "checkpoints" / f"step-{step:06d}"
    shutil.copytree(tiny_weights, ckpt / "model")
    (ckpt / "state.json").write_text(json.dumps({"step": step}))
    checkpoint_id = new_id("ckpt")
    with app.state.sessionmaker() as session:
        session.add(Checkpoint(id=checkpoint_id, job_id=job_id, step=step,
                               path=str(ckpt.relative_to(settings.storage_dir)), bytes=1))
        session.commit()
    return checkpoint_id


def test_export_route_client_and_cli(client, app, settings, alice, bob, job, tiny_weights, basis):
    checkpoint_id = _full_checkpoint(app, settings, job["id"], tiny_weights)
    url = f"/v1/jobs/{job['id']}/checkpoints/{checkpoint_id}/export"
    made = client.post(url, headers=alice)
    assert made.status_code == 201, made.text
    model = made.json()
    assert model["id"] == f"ft/{job['id'][-12:]}-step1"
    assert (model["source"], model["owned"], model["format"], model["job_id"], model["base_model"]) == (
        "export", True, "full", job["id"], "tiny")
    assert model["parameter_count"] > 0 and model["bytes"] > 0 and model["created_at"]
    assert client.post(url, headers=alice).json()["id"] == model["id"]  # the same default export
    assert model["id"] in _names(client, alice) and model["id"] not in _names(client, bob)
    assert client.post(url, headers=bob).status_code == 404

    for body, status, param in [({"name": "tiny"}, 422, "name"), ({"name": "tiny-arith"}, 422, "name"),
                                ({"name": "Qwen/Qwen2.5-0.5B"}, 422, "name"), ({"name": "../up"}, 422, "name"),
                                ({"name": model["id"]}, 409, "name"), ({"merge_lora": "x"}, 422, "merge_lora"),
                                ({"nme": "x"}, 422, "nme")]:
        response = client.post(url, headers=alice, json=body)
        assert (response.status_code, response.json()["error"]["param"]) == (status, param), body
    assert sorted(p.name for p in settings.model_roots[0].iterdir()) == ["ft", "tiny"]  # no staging left

    status, out, _ = basis("jobs", "checkpoints", job["id"])  # the ids `jobs export` takes
    assert status == 0 and out.split()[:3] == [checkpoint_id, "step", "1"], out
    assert json.loads(basis("jobs", "checkpoints", job["id"], "--json")[1])[0]["id"] == checkpoint_id
    status, out, _ = basis("jobs", "export", job["id"], "latest", "--name", "ft/alice-by-cli")
    assert status == 0 and json.loads(out)["id"] == "ft/alice-by-cli"
    assert json.loads(basis("models", "get", "ft/alice-by-cli")[1])["owned"] is True
    assert basis("models", "delete", "ft/alice-by-cli")[0] == 0
    assert "ft/alice-by-cli" not in _names(client, alice)
    assert not (settings.model_roots[0] / "ft" / "alice-by-cli").exists()

    from client import BasisClient, NotFound

    api = BasisClient(http=client, api_key=alice["Authorization"].removeprefix("Bearer "))
    exported = api.export_checkpoint(job["id"], checkpoint_id, name="ft/alice-typed")
    assert api.get_model("ft/alice-typed") == exported and api.get_job(job["id"]).fine_tuned_model is None
    api.delete_model("ft/alice-typed")
    with pytest.raises(NotFound):
        api.get_model("ft/alice-typed")


def test_an_adapter_model_trains_with_hf_only_and_needs_its_base(client, app, settings, model_dir, alice,
                                                                 dataset, create_job):
    _record(app, settings, "ft/adapter-1", owner="alice", fmt="adapter", base="tiny")
    (settings.model_roots[0] / "ft" / "adapter-1" / "adapter_config.json").write_text("{}")
    assert create_job(alice, dataset["id"], model="ft/adapter-1").status_code == 201
    vllm = create_job(alice, dataset["id"], model="ft/adapter-1",
                      config={"engine": "vllm", "max_steps": 3, "batch_size": 2})
    assert vllm.status_code == 422 and vllm.json()["error"]["param"] == "model", vllm.text
    assert "merge_lora" in vllm.json()["error"]["message"]
    with app.state.sessionmaker() as session:
        session.execute(update(ModelRecord).where(ModelRecord.name == "ft/adapter-1")
                        .values(base_model="gone"))
        session.commit()
    orphan = create_job(alice, dataset["id"], model="ft/adapter-1")
    assert orphan.status_code == 409 and "'gone'" in orphan.json()["error"]["message"], orphan.text


def test_a_full_export_keeps_the_training_defaults_its_base_recommends(client, app, settings, alice, job,
                                                                       tiny_weights, create_job, dataset):
    """A job on a fine-tuned model gets the reward and lengths a job on its base gets (the
    checkpoint's `model/` has no basis_defaults.json: the export copies the job's model's)."""
    from trainer.model_defaults import write_model_defaults

    recommended = {"reward": "exact", "sampling": {"max_new_tokens": 8}}
    write_model_defaults(settings.model_roots[0] / job["model"], recommended, "test recipe")
    checkpoint_id = _full_checkpoint(app, settings, job["id"], tiny_weights)
    made = client.post(f"/v1/jobs/{job['id']}/checkpoints/{checkpoint_id}/export", headers=alice,
                       json={"name": "ft/alice-tuned"})
    assert made.status_code == 201, made.text
    assert made.json()["config_defaults"] == recommended
    on_it = create_job(alice, dataset["id"], model="ft/alice-tuned", config={"max_steps": 2, "batch_size": 2})
    assert on_it.status_code == 201, on_it.text
    config = on_it.json()["config"]
    assert (config["reward"], config["sampling"]["max_new_tokens"]) == ("exact", 8)

