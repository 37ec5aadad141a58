"""Pulling a model from a hub (core/services/model_store.py) against a local hub server over HTTP
(tests/hub_server.py): huggingface_hub's real download code, a real database, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from core.db import make_engine, session_factory
from core.models import ModelRecord
from core.services import model_store
from core.services.catalog import list_models, resolve_model
from core.services.errors import Conflict, Invalid, TooLarge, Upstream


@pytest.fixture
def session(settings):
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def leftovers(settings) -> list[str]:
    """Everything under the models root: empty after a failed pull (no model, no staging dir)."""
    root = settings.model_roots[0]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if not (p.is_dir() and p.name == model_store.STAGING and not any(p.iterdir())))


def records(session) -> int:
    return session.scalar(select(func.count()).select_from(ModelRecord))


def test_pull_fetches_safetensors_at_a_pinned_commit_and_records_the_model(settings, session, hub):
    record = model_store.pull_model(settings, session, "org/tiny", "main")
    commit = hub.repos["org/tiny"].commit
    path = settings.model_roots[0] / "org" / "tiny"
    assert (record.name, record.source, record.source_ref, record.revision) == (
        "org/tiny", "hub", "org/tiny", commit)
    assert (record.format, record.path, record.owner_id) == ("full", "org/tiny", None)
    assert record.architecture == "Qwen2ForCausalLM" and record.chat_template is True
    assert record.bytes == sum(p.stat().st_size for p in path.iterdir()) > 300_000

    # Parameter count from the headers equals the loaded model's; the model is usable by name.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.modeling import from_pretrained
    assert resolve_model(session, settings, "user_anyone", "org/tiny").path == path  # shared
    model = from_pretrained(AutoModelForCausalLM, str(path))
    assert record.parameter_count == sum(p.numel() for p in model.parameters())  # tied: counted once
    assert from_pretrained(AutoTokenizer, str(path)).chat_template

    # Every file came at the resolved commit, over plain HTTP (no Xet), with HF_TOKEN.
    resolves = [p for m, p, _ in hub.requests if "/resolve/" in p]
    assert resolves and all(f"/resolve/{commit}/" in p for p in resolves)
    assert "model.safetensors" in hub.downloads("org/tiny")
    assert {auth for _, _, auth in hub.requests} == {"Bearer hf_test_token"}
    assert not (path / ".cache").exists()
    assert leftovers(settings) == sorted(["org", "org/tiny", *(f"org/tiny/{f}" for f in os.listdir(path))])
    assert records(session) == 1


def test_a_bad_revision_is_refused_naming_it_and_leaves_nothing(settings, session, hub):
    with pytest.raises(Invalid) as err:
        model_store.pull_model(settings, session, "org/tiny", "no-such-branch")
    assert err.value.param == "revision" and "no-such-branch" in err.value.message
    assert leftovers(settings) == [] and records(session) == 0


def test_an_unknown_repo_is_refused_naming_it(settings, session, hub):
    with pytest.raises(Invalid) as err:
        model_store.pull_model(settings, session, "org/nothing")
    assert err.value.param == "repo_id" and "org/nothing" in err.value.message
    assert leftovers(settings) == [] and records(session) == 0


def test_a_repo_with_only_pickled_weights_is_refused_before_any_download(settings, session, hub):
    with pytest.raises(Invalid) as err:
        model_store.pull_model(settings, session, "org/pickled")
    assert "safetensors" in err.value.message and "pytorch_model.bin" in err.value.message
    assert hub.downloads("org/pickled") == []  # not even config.json: refused from the listing
    assert leftovers(settings) == [] and records(session) == 0


def test_a_model_over_the_size_limit_is_refused_before_any_download(settings, session, hub):
    small = settings.model_copy(update={"model_max_bytes": 100_000})
    with pytest.raises(TooLarge) as err:
        model_store.pull_model(small, session, "org/tiny")
    assert "BASIS_MODEL_MAX_BYTES" in err.value.message and err.value.status == 413
    assert hub.downloads("org/tiny") == []
    assert leftovers(settings) == [] and records(session) == 0


def test_a_download_failing_half_way_leaves_nothing(settings, session, hub):
    hub.fail_get[("org/tiny", "model.safetensors")] = 500
    with pytest.raises(Upstream):
        model_store.pull_model(settings, session, "org/tiny")
    assert "config.json" in hub.downloads("org/tiny")  # other files did arrive, then went
    assert leftovers(settings) == [] and records(session) == 0
    assert list_models(session, settings, "user_anyone") == []


def test_a_name_in_use_is_a_conflict(settings, session, hub):
    model_store.pull_model(settings, session, "org/tiny", name="mine")
    with pytest.raises(Conflict) as err:
        model_store.pull_model(settings, session, "org/tiny", name="mine")
    assert err.value.param == "name" and records(session) == 1
    with pytest.raises(Invalid) as bad:
        model_store.pull_model(settings, session, "org/tiny", name="../escape")
    assert bad.value.param == "name"


def test_ref_parsing_and_validation():
    assert model_store.parse_ref("org/m@v1.0") == ("org/m", "v1.0")
    assert model_store.parse_ref("org/m@v1", "main") == ("org/m", "main")
    assert model_store.parse_ref("org/m") == ("org/m", None)


def test_weights_that_are_not_safetensors_fail_the_pull_and_leave_nothing(settings, session, hub,
                                                                          tiny_model_files):
    hub.add_repo("org/fake", {**tiny_model_files, "model.safetensors": b"\x80\x04 a pickle, renamed"})
    with pytest.raises(Invalid) as err:
        model_store.pull_model(settings, session, "org/fake")
    assert "not valid safetensors" in err.value.message
    assert leftovers(settings) == [] and records(session) == 0


def test_staging_of_a_dead_process_is_cleaned_at_start(settings):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = model_store.socket.gethostname()
    owners = {"pull_dead": f"{host} {dead}", "pull_mine": f"{host} {os.getpid()}",  # a previous me
              "pull_live": f"{host} {os.getppid()}", "pull_elsewhere": f"other-host {dead}"}
    for pull_id, owner in owners.items():
        path = model_store.staging_dir(settings, pull_id)
        (path / "model").mkdir(parents=True)
        (path / "owner").write_text(owner + "\n")
    removed = model_store.clean_stale_staging(settings)
    assert sorted(p.name for p in removed) == ["pull_dead", "pull_mine"]
    assert model_store.staging_dir(settings, "pull_live").exists()
    assert model_store.staging_dir(settings, "pull_elsewhere").exists()  # young: maybe still pulling
    removed = model_store.clean_stale_staging(settings, other_host_after=-1)
    assert [p.name for p in removed] == ["pull_elsewhere"]
