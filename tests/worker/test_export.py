"""Issue 16 item 3 on real databases with the real trainer (a 1-layer tiny model, 2 steps on CPU):
a succeeded job exports its final checkpoint as its `fine_tuned_model`, the export loads through
`trainer.modeling` with exactly the checkpoint's weights (full, LoRA merged, LoRA as an adapter),
a second job trains on it, and only its owner can use it."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Checkpoint, Dataset, Job, JobEvent, JobStatus, ModelRecord, User, new_id
from core.services import catalog
from core.services.errors import Invalid, NotFound
from core.services.exports import export_job_checkpoint
from trainer.modeling import load_causal_lm
from worker.tasks import execute_job

CONFIG = {"estimator": "reinforce_pp", "reward": "exact", "n0": 0, "max_steps": 2, "batch_size": 4,
          "sampling": {"max_new_tokens": 4}, "optimizer": {"lr": 3e-3, "micro_batch_size": 4, "weight_decay": 0.5},
          "loss": {"kl_coef": 0.05}, "eval_every": 0, "probe_every": 0, "reward_workers": 0, "checkpoint_every": 0,
          "device": "cpu", "cpu_threads": 1, "seed": 1}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory) -> Path:
    from trainer.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("export") / "tiny", layers=1, hidden=64, heads=2)


@pytest.fixture
def world(settings, engine, tiny_source):
    """The tiny model as `tiny` in the models root, and `make_job(owner, model, config)`."""
    shutil.copytree(tiny_source, settings.model_roots[0] / "tiny")
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    from trainer.tasks import generate_arithmetic, write_jsonl

    rows = settings.datasets_dir / "arith.jsonl"
    write_jsonl(generate_arithmetic(24, seed=0), rows)
    users: dict[str, str] = {}

    def make_job(owner: str = "alice", model: str = "tiny", **config) -> str:
        with session_scope(engine) as session:
            if owner not in users:
                user = User(name=owner)
                session.add(user)
                session.flush()
                dataset = Dataset(id=new_id("ds"), owner_id=user.id, name="a", filename="a.jsonl",
                                  path="datasets/arith.jsonl", rows=24, bytes=1, sha256="0" * 64)
                session.add(dataset)
                users[owner] = user.id
                users[owner + "/ds"] = dataset.id
            job = Job(owner_id=users[owner], dataset_id=users[owner + "/ds"], model=model,
                      estimator="reinforce_pp", config={**CONFIG, **config}, queue="gpu",
                      status=JobStatus.queued)
            session.add(job)
            session.flush()
            return job.id

    make_job.users = users
    return make_job


def run(job_id, engine, settings, worker_settings) -> Job:
    execute_job(job_id, engine=engine, settings=settings, worker_settings=worker_settings,
                stop=threading.Event())
    with Session(engine) as session:
        return session.get(Job, job_id)


def _final_checkpoint(engine, settings, job_id) -> Path:
    with Session(engine) as session:
        ckpt = session.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id)
                              .order_by(Checkpoint.step.desc()))
        return settings.storage_dir / ckpt.path if not Path(ckpt.path).is_absolute() else Path(ckpt.path)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_a_succeeded_job_exports_its_final_checkpoint_and_a_second_job_trains_on_it(
        world, engine, settings, worker_settings):
    job = run(world(), engine, settings, worker_settings)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft/{job.id[-12:]}-step2"
    with Session(engine) as session:
        record = session.scalar(select(ModelRecord).where(ModelRecord.name == job.fine_tuned_model))
        kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id)).all()
    assert (record.owner_id, record.source, record.format, record.base_model, record.job_id) == (
        job.owner_id, "export", "full", "tiny", job.id)
    assert "exported" in kinds and record.parameter_count > 0 and record.architecture == "Qwen2ForCausalLM"

    export = settings.model_roots[0] / job.fine_tuned_model
    ckpt = _final_checkpoint(engine, settings, job.id)
    assert (export / "config.json").is_file() and (export / "tokenizer_config.json").is_file()
    exported, saved = _weights(export), _weights(ckpt / "model")
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    _same(load_causal_lm(str(export)), load_causal_lm(str(ckpt / "model")))
    trained = load_causal_lm(str(settings.model_roots[0] / "tiny"))
    assert any(not torch.equal(v, trained.state_dict()[k]) for k, v in load_causal_lm(str(export)).state_dict().items())

    # The export is a model of its owner: a second job trains on it, another user's cannot.
    second = run(world("alice", job.fine_tuned_model, export_model=False), engine, settings, worker_settings)
    assert second.status == "succeeded" and second.fine_tuned_model is None, second.error
    foreign = run(world("bob", job.fine_tuned_model), engine, settings, worker_settings)
    assert foreign.status == "failed" and "no model" in foreign.error


def test_lora_exports_merged_and_as_an_adapter(world, engine, settings, worker_settings):
    job = run(world(lora=LORA, export_model=False), engine, settings, worker_settings)
    assert job.status == "succeeded" and job.fine_tuned_model is None, job.error
    ckpt = _final_checkpoint(engine, settings, job.id)
    with Session(engine) as session:
        checkpoint_id = session.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job.id,
                                                                   Checkpoint.step == 2))
        merged = export_job_checkpoint(session, settings, job.owner_id, job.id, checkpoint_id,
                                       name="ft/alice-merged")
        adapter = export_job_checkpoint(session, settings, job.owner_id, job.id, checkpoint_id,
                                        name="ft/alice-adapter", merge_lora=False)
        assert (merged.format, adapter.format, adapter.base_model) == ("full", "adapter", "tiny")

    from peft import PeftModel

    base_dir = settings.model_roots[0] / "tiny"
    expected = PeftModel.from_pretrained(load_causal_lm(str(base_dir)), str(ckpt / "adapter")).merge_and_unload()
    merged_dir, adapter_dir = settings.model_roots[0] / "ft/alice-merged", settings.model_roots[0] / "ft/alice-adapter"
    _same(load_causal_lm(str(merged_dir)), expected)
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    stored, trained = _weights(adapter_dir), _weights(ckpt / "adapter")
    assert stored.keys() == trained.keys() and all(torch.equal(stored[k], trained[k]) for k in stored)
    _same(load_causal_lm(str(adapter_dir), str(base_dir)), expected)

    # An adapter model is a job's `model` like any other: the base with the adapter merged in.
    with Session(engine) as session:
        resolved = catalog.resolve_model(session, settings, job.owner_id, "ft/alice-adapter")
    assert (resolved.path, resolved.base) == (adapter_dir, base_dir)
    on_adapter = run(world("alice", "ft/alice-adapter", export_model=False), engine, settings, worker_settings)
    assert on_adapter.status == "succeeded", on_adapter.error


def test_refused_and_failed_exports_leave_nothing(world, engine, settings, worker_settings):
    job = run(world(export_model=False), engine, settings, worker_settings)
    assert job.status == "succeeded" and job.fine_tuned_model is None
    root = settings.model_roots[0]
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with Session(engine) as session:
        for name, error in [("tiny", Invalid), ("../x", Invalid), ("a/b/c", Invalid)]:
            with pytest.raises(error) as caught:
                export_job_checkpoint(session, settings, job.owner_id, job.id, None, name=name)
            assert caught.value.param == "name"
        with pytest.raises(NotFound):
            export_job_checkpoint(session, settings, "user_someone_else", job.id, None)

        def failing_commit(_session) -> None:
            raise RuntimeError("database went away at commit")

        with pytest.raises(RuntimeError):
            export_job_checkpoint(session, settings, job.owner_id, job.id, None, name="ft/x",
                                  before_commit=failing_commit)
        assert session.scalars(select(ModelRecord)).all() == []
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_failed_export_leaves_the_job_succeeded_with_a_warning(world, engine, settings, worker_settings):
    job_id = world()
    (settings.model_roots[0] / "ft").mkdir(parents=True)
    (settings.model_roots[0] / "ft" / f"{job_id[-12:]}-step2").write_text("in the way")  # name taken
    job = run(job_id, engine, settings, worker_settings)
    assert (job.status, job.fine_tuned_model) == ("succeeded", None)
    with Session(engine) as session:
        event = session.scalar(select(JobEvent).where(JobEvent.job_id == job_id,
                                                      JobEvent.kind == "export_failed"))
        assert event.level == "warning" and "already exists" in event.message
        assert session.scalars(select(ModelRecord)).all() == []
