"""`POST /v1/models` (admins), `GET /v1/model-pulls/{id}` and `basis models pull`, against a local
hub over HTTP (tests/hub_server.py): the real huggingface_hub download, a real database."""

from __future__ import annotations

import time

import pytest

from cli.main import main
from core.db import session_scope
from core.services.catalog import resolve_model
from core.services.keys import create_key
from core.settings import get_settings


@pytest.fixture
def root_key(app) -> dict[str, str]:
    with session_scope(app.state.engine) as session:
        _, secret = create_key(session, "root", admin=True)
    return {"Authorization": f"Bearer {secret}"}


def leftovers(settings) -> list[str]:
    root = settings.model_roots[0]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not (p.is_dir() and p.name == ".pulls" and not any(p.iterdir())))


def finish(app, client, root_key, pull_id: str) -> dict:
    app.state.model_pulls.wait(pull_id, timeout=60)
    response = client.get(f"/v1/model-pulls/{pull_id}", headers=root_key)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_admin_pulls_a_model_that_jobs_can_then_use(app, client, settings, root_key, alice, hub):
    response = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny@main"})
    assert response.status_code == 202, response.text
    pull = response.json()
    commit = hub.repos["org/tiny"].commit
    assert (pull["object"], pull["name"], pull["revision"], pull["commit"]) == (
        "model.pull", "org/tiny", "main", commit)
    assert "model.safetensors" in pull["files"] and not any(f.endswith(".bin") for f in pull["files"])
    done = finish(app, client, root_key, pull["id"])
    assert (done["status"], done["error"]) == ("succeeded", None)
    assert done["bytes_done"] == done["bytes_total"] > 300_000
    with app.state.sessionmaker() as session:  # what job creation and the worker resolve
        assert resolve_model(session, settings, "user_any", "org/tiny").path == (
            settings.model_roots[0] / "org" / "tiny")
    # Every user sees the record's fields in GET /v1/models (shared: owner NULL).
    listed = {m["name"]: m for m in client.get("/v1/models", headers=alice).json()["data"]}["org/tiny"]
    assert (listed["source"], listed["revision"], listed["architecture"], listed["chat_template"]) == (
        "hub", commit, "Qwen2ForCausalLM", True)
    assert listed["bytes"] == done["bytes_total"] and listed["parameter_count"] > 50_000
    assert listed["owned"] is False and listed["format"] == "full"
    assert done["model"] == listed
    assert [p["id"] for p in client.get("/v1/model-pulls", headers=root_key).json()["data"]] == [pull["id"]]


def test_the_api_answers_and_shows_progress_while_a_pull_downloads(app, client, root_key, hub):
    hub.slow_get[("org/tiny", "model.safetensors")] = 1.5
    pull = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny"}).json()
    started = time.monotonic()
    seen = client.get(f"/v1/model-pulls/{pull['id']}", headers=root_key).json()
    assert client.get("/v1/health").status_code == 200
    assert time.monotonic() - started < 1.0  # answered while the weights were still on their way
    assert seen["status"] == "downloading" and seen["bytes_done"] < seen["bytes_total"]
    listed = client.get("/v1/models", headers=root_key).json()["data"]
    assert "org/tiny" not in [m["name"] for m in listed]  # half a model is never listed
    assert finish(app, client, root_key, pull["id"])["status"] == "succeeded"


@pytest.mark.parametrize("body, status, param, words", [
    ({"repo_id": "org/tiny", "revision": "no-such-branch"}, 422, "revision", "no-such-branch"),
    ({"repo_id": "org/tiny@no-such-branch"}, 422, "revision", "no-such-branch"),
    ({"repo_id": "org/pickled"}, 422, "repo_id", "safetensors"),
    ({"repo_id": "org/absent"}, 422, "repo_id", "org/absent"),
    ({"repo_id": "../etc"}, 422, "repo_id", "repo id"),
    ({"repo_id": "org/tiny", "name": "a/b/c"}, 422, "name", "name"),
])
def test_bad_pulls_are_refused_at_once_and_leave_nothing(client, settings, root_key, hub, body,
                                                          status, param, words):
    response = client.post("/v1/models", headers=root_key, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"]
    assert leftovers(settings) == [] and hub.downloads("org/tiny") == hub.downloads("org/pickled") == []


def test_too_big_is_refused_before_download(app, client, settings, root_key, hub):
    app.state.model_pulls.settings = settings.model_copy(update={"model_max_bytes": 1000})
    response = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert hub.downloads("org/tiny") == [] and leftovers(settings) == []


def test_a_failed_download_is_a_failed_pull_and_leaves_nothing(app, client, settings, root_key, hub):
    hub.fail_get[("org/tiny", "model.safetensors")] = 500
    pull = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny"}).json()
    done = finish(app, client, root_key, pull["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "upstream_error"
    assert done["model"] is None and leftovers(settings) == []
    assert "org/tiny" not in [m["name"] for m in client.get("/v1/models", headers=root_key).json()["data"]]


def test_pulls_are_for_admins_only(client, alice, hub):
    response = client.post("/v1/models", headers=alice, json={"repo_id": "org/tiny"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden" and "admin" in response.json()["error"]["message"]
    assert client.get("/v1/model-pulls", headers=alice).status_code == 403
    assert client.get("/v1/model-pulls/pull_x", headers=alice).status_code == 403
    assert client.post("/v1/models", json={"repo_id": "org/tiny"}).status_code == 401
    assert hub.requests == []  # refused before the hub was asked anything


def test_basis_models_pull_as_a_user_says_it_needs_an_admin_not_a_new_key(basis, alice, monkeypatch, hub):
    """403 is not a bad key: the CLI says the user is no admin, not 'create a new key'."""
    monkeypatch.setenv("BASIS_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    status, _, err = basis("models", "pull", "org/tiny")
    assert status == 1 and err.startswith("error: forbidden: this route is for administrators"), err
    assert "create a new key" not in err and hub.requests == []


@pytest.fixture
def basis(client, root_key, monkeypatch, capsys):
    monkeypatch.setenv("BASIS_API_KEY", root_key["Authorization"].removeprefix("Bearer "))
    get_settings.cache_clear()

    def run(*argv: str):
        status = main(list(argv), http=client)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    yield run
    get_settings.cache_clear()


def test_basis_models_pull_shows_progress_and_the_model_is_usable(basis, app, settings, hub):
    status, out, err = basis("models", "pull", "org/tiny@main", "--name", "tiny-pulled",
                             "--interval", "0.05")
    assert status == 0, err
    assert out.strip() == "tiny-pulled"
    assert "100%" in err and hub.repos["org/tiny"].commit in err
    assert "Qwen2ForCausalLM" in err and "a chat template" in err
    assert "tiny-pulled" in basis("models", "list")[1].split()

    from transformers import AutoModelForCausalLM

    from trainer.modeling import from_pretrained
    with app.state.sessionmaker() as session:
        path = resolve_model(session, settings, "user_any", "tiny-pulled").path
    model = from_pretrained(AutoModelForCausalLM, str(path))
    assert model.config.architectures == ["Qwen2ForCausalLM"]


def test_basis_models_pull_says_why_and_leaves_nothing(basis, settings, hub):
    status, out, err = basis("models", "pull", "org/pickled")
    assert status == 1 and out == ""
    assert "safetensors" in err and "repo_id" in err
    status, _, err = basis("models", "pull", "org/tiny@v9")
    assert status == 1 and "no revision 'v9'" in err
    assert leftovers(settings) == []


def test_a_pulled_model_is_deleted_by_an_admin_only_and_can_be_pulled_again(app, client, settings,
                                                                            root_key, alice, hub):
    pull = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny"}).json()
    assert finish(app, client, root_key, pull["id"])["status"] == "succeeded"
    again = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny"})
    assert again.status_code == 409 and again.json()["error"]["param"] == "name"
    assert client.delete("/v1/models/org/tiny", headers=alice).status_code == 403  # shared
    assert client.delete("/v1/models/org/tiny", headers=root_key).status_code == 204
    assert not any(p.startswith("org/tiny") for p in leftovers(settings))  # an empty org/ may stay
    pull = client.post("/v1/models", headers=root_key, json={"repo_id": "org/tiny"}).json()
    assert finish(app, client, root_key, pull["id"])["status"] == "succeeded"


def test_the_local_hub_runs_standalone_for_a_pull_by_hand(tmp_path):
    """`python -m tests.hub_server` (docs/models.md) serves a --repo directory and the two sample
    repos, printing the HF_ENDPOINT to give the API."""
    import json
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    repo = tmp_path / "m"
    repo.mkdir()
    (repo / "config.json").write_text('{"architectures": ["Qwen2ForCausalLM"]}')
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.hub_server", "--repo", f"me/m={repo}"],
                               cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (line := process.stdout.readline()).startswith("HF_ENDPOINT="):
            assert line, f"the hub exited: {lines}"
            lines.append(line)
        endpoint = line.strip().removeprefix("HF_ENDPOINT=")
        assert [x.split()[0] for x in lines if " @ " in x] == ["org/tiny", "org/pickled", "me/m"]
        with urllib.request.urlopen(f"{endpoint}/api/models/me/m/revision/main") as response:
            assert [s["rfilename"] for s in json.load(response)["siblings"]] == ["config.json"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_pull_may_not_take_a_name_under_the_exports_prefix(app, client, settings, root_key, hub):
    """`ft/` is the users' exports' namespace (catalog.EXPORT_PREFIX): a pull there is refused
    with nothing downloaded, so no admin can take a name an export will want."""
    response = client.post("/v1/models", headers=root_key,
                           json={"repo_id": "org/tiny", "name": "ft/org-tiny"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "name" and "ft/" in response.json()["error"]["message"]
    assert leftovers(settings) == []
