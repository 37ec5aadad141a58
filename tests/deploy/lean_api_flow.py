"""Run in a subprocess by test_deploy_files.py: the API's whole job path with the ML stack hidden.

docker/Dockerfile.api installs only the `api` extra of pyproject.toml: no torch, transformers, peft,
safetensors, streamlit (scripts/check_deploy.py `excluded_modules("api")` lists the modules of every
other role's extra). This script makes those imports fail, then uploads a
dataset, imports one from a parquet file, creates a job (config validated, task sent through the
real Celery enqueue on the embedded broker), gets a 422 for a bad config, lists models, checkpoints
and metrics, and exports checkpoints (copies work, a LoRA merge is a 422 naming merge_lora).
"""

import json
import sys
import tempfile
from pathlib import Path

BLOCKED = frozenset(sys.argv[1].split(","))


class Hiding:
    """Wraps a meta path finder so the blocked packages look not installed: `import torch` raises
    ModuleNotFoundError, `importlib.util.find_spec("torch")` is None and "torch" never enters
    sys.modules. (A `sys.modules["torch"] = None` entry would also fail the import, but libraries
    that test `"torch" in sys.modules`, as `datasets` does before pickling, would then import it.)"""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return find_spec(fullname, path, target) if find_spec else None

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]

from fastapi.testclient import TestClient  # noqa: E402

from api.main import create_app  # noqa: E402
from core.db import migrate, session_scope  # noqa: E402
from core.models import Checkpoint  # noqa: E402
from core.services.keys import create_key  # noqa: E402
from core.settings import Settings  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    settings = Settings(data_dir=Path(tmp))
    model = settings.model_roots[0] / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    migrate(settings.database_url)
    app = create_app(settings)
    with session_scope(app.state.engine) as session:
        _, secret = create_key(session, "alice")
    auth = {"Authorization": f"Bearer {secret}"}
    rows = "".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(40))
    with TestClient(app, raise_server_exceptions=True) as client:
        ds = client.post("/v1/datasets", headers=auth, files={"file": ("a.jsonl", rows.encode())})
        assert ds.status_code == 201, ds.text
        body = {"dataset_id": ds.json()["id"], "model": "tiny",
                "config": {"estimator": "basis", "batch_size": 4, "max_steps": 2}}
        job = client.post("/v1/jobs", headers=auth, json=body)
        assert job.status_code == 201, job.text
        events = client.get(f"/v1/jobs/{job.json()['id']}/events", headers=auth).json()["data"]
        assert not any(e["kind"] == "enqueue_failed" for e in events), events
        bad = client.post("/v1/jobs", headers=auth, json={**body, "config": {"estimator": "nope"}})
        assert bad.status_code == 422 and bad.json()["error"]["param"] == "config.estimator", bad.text
        # The import path (the `datasets` library, pyarrow) needs no ML stack either.
        sample = Path(__file__).resolve().parents[2] / "examples" / "datasets" / "gsm8k_sample.parquet"
        imported = client.post("/v1/datasets/import", headers=auth, files={
            "file": ("gsm8k.parquet", sample.read_bytes())}, data={
            "prompt_field": "question", "answer_field": "answer", "answer_preset": "gsm8k"})
        assert imported.status_code == 201 and imported.json()["rows"] == 8, imported.text
        for path in ("/v1/models", f"/v1/jobs/{job.json()['id']}/checkpoints",
                     f"/v1/jobs/{job.json()['id']}/metrics"):
            assert client.get(path, headers=auth).status_code == 200, path
        # Exports without the ML stack: a full checkpoint and a LoRA adapter are copies; merging
        # an adapter needs torch, so it is a 422 naming merge_lora, never a 500.
        job_id = job.json()["id"]
        for step, kind, files in [(1, "model", ("config.json",)),
                                  (2, "adapter", ("adapter_config.json", "adapter_model.safetensors"))]:
            ckpt = settings.job_run_dir(job_id) / "checkpoints" / f"step-{step:06d}"
            (ckpt / kind).mkdir(parents=True)
            for file in files:
                (ckpt / kind / file).write_text("{}")
            (ckpt / "state.json").write_text("{}")
            with session_scope(app.state.engine) as session:
                session.add(Checkpoint(id=f"ckpt_{kind}", job_id=job_id, step=step,
                                       path=str(ckpt.relative_to(settings.storage_dir))))
        url = f"/v1/jobs/{job_id}/checkpoints/ckpt_{{}}/export"
        full = client.post(url.format("model"), headers=auth, json={"name": "ft/full"})
        assert full.status_code == 201 and full.json()["format"] == "full", full.text
        merged = client.post(url.format("adapter"), headers=auth, json={"name": "ft/merged"})
        assert merged.status_code == 422 and merged.json()["error"]["param"] == "merge_lora", merged.text
        adapter = client.post(url.format("adapter"), headers=auth,
                              json={"name": "ft/adapter", "merge_lora": False})
        assert adapter.status_code == 201 and adapter.json()["format"] == "adapter", adapter.text
        names = [m["id"] for m in client.get("/v1/models", headers=auth).json()["data"]]
        assert names == ["ft/adapter", "ft/full", "tiny"], names
    app.state.engine.dispose()
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
print("lean api flow ok")
