"""POST /v1/datasets/import from a hub id, against a local hub (tests/dataset_hub.py) over HTTP.

huggingface_hub and datasets read HF_ENDPOINT when they are imported, as a server does at start-up,
so the API runs in a child process started with HF_ENDPOINT and HF_TOKEN set (this process has
imported both long ago): the same path a deployed server takes, with nothing patched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli.demo import demo_dataset
from scripts.make_sample_datasets import OUT
from tests.dataset_hub import DatasetHub, readme

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import json, sys
from fastapi.testclient import TestClient
from api.main import create_app
from core.db import session_scope
from core.services.keys import create_key
from core.settings import Settings

app = create_app(Settings(), enqueue=lambda job_id, queue: None)
with session_scope(app.state.engine) as session:
    _, secret = create_key(session, "alice")
auth = {"Authorization": f"Bearer {secret}"}
results = []
with TestClient(app, raise_server_exceptions=False) as client:
    for form in json.loads(sys.argv[1]):
        response = client.post("/v1/datasets/import", headers=auth, data=form)
        rows = None
        if response.status_code == 201:
            rows = client.get(f"/v1/datasets/{response.json()['id']}/rows?limit=100",
                              headers=auth).json()["data"]
        results.append({"status": response.status_code, "body": response.json(), "rows": rows})
    count = len(client.get("/v1/datasets", headers=auth).json()["data"])
print(json.dumps({"results": results, "datasets": count}))
"""


def run_imports(hub: DatasetHub, settings, tmp_path, forms: list[dict]) -> dict:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "BASIS_DATA_DIR": str(settings.data_dir), "BASIS_DATABASE_URL": settings.database_url,
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(forms)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_from_a_hub_id_with_config_split_and_token(settings, tmp_path):
    gsm8k = (OUT / "gsm8k_sample.parquet").read_bytes()
    demo = (OUT / "demo_arithmetic.parquet").read_bytes()
    files = {"README.md": readme({"main": {"train": "main/train-*", "test": "main/test-*"},
                                  "demo": {"train": "demo/train-*"}}),
             "main/train-00000-of-00001.parquet": gsm8k,
             "main/test-00000-of-00001.parquet": gsm8k,
             "demo/train-00000-of-00001.parquet": demo}
    gsm = {"hub_id": "org/gsm", "prompt_field": "question", "answer_field": "answer",
           "answer_preset": "gsm8k"}
    jsonl = b"".join(json.dumps({"problem": f"{i}+{i}", "solution": f"\\boxed{{{2 * i}}}"}).encode()
                     + b"\n" for i in range(3))
    deep = b'{"problem": "a", "solution": "\\\\boxed{1}", "x": ' + b"[" * 100_000 + \
        b"]" * 100_000 + b"}\n"
    with DatasetHub() as hub:
        sha = hub.add_repo("org/gsm", files)
        hub.add_repo("org/math", {"README.md": readme({"default": {"train": "train.jsonl"}}),
                                  "train.jsonl": jsonl})
        hub.add_repo("org/deep", {"README.md": readme({"default": {"train": "train.jsonl"}}),
                                  "train.jsonl": deep})
        hub.add_repo("org/text", {"README.md": readme({"default": {"train": "train.txt"}}),
                                  "train.txt": b"hello\n"})
        math = {"prompt_field": "problem", "answer_field": "solution", "answer_preset": "boxed"}
        out = run_imports(hub, settings, tmp_path, [
            {**gsm, "config": "main", "split": "test", "revision": sha},
            {**gsm, "config": "demo", "prompt_field": "expression", "answer_field": "solution",
             "max_rows": "5"},
            {**gsm, "config": "main", "split": "validation"},
            {**gsm, "config": "nope"},
            {**gsm, "hub_id": "org/missing"},
            {**gsm, "config": "main", "revision": "v9"},
            {**gsm, "config": "main", "prompt_field": "problem"},
            {"hub_id": "org/math", **math},
            {"hub_id": "org/deep", **math},
            {"hub_id": "org/text", **math},
        ])
        auth = {a for _, _, a in hub.requests}
    ok, demo_rows, bad_split, bad_config, missing, bad_revision, unknown, *more = out["results"]
    json_ok, json_deep, text = more
    assert ok["status"] == 201, ok
    assert ok["body"]["filename"] == f"org/gsm@{sha}:main:test" and ok["body"]["rows"] == 8
    assert [r["answer"] for r in ok["rows"]][:3] == ["169", "1200", "150"]
    assert demo_rows["status"] == 201, demo_rows
    assert [r["answer"] for r in demo_rows["rows"]] == \
        [json.loads(line)["answer"] for line in demo_dataset().splitlines()[:5]]
    assert auth == {"Bearer hf_test_token"}  # HF_TOKEN went with every request to HF_ENDPOINT
    for result, param in [(bad_split, "split"), (bad_config, "config"), (missing, "hub_id"),
                          (bad_revision, "revision"), (unknown, "prompt_field")]:
        assert result["status"] == 422, result
        assert result["body"]["error"]["param"] == param, result
    assert "'question', 'answer'" in unknown["body"]["error"]["message"]
    assert "its splits are 'train', 'test'" in bad_split["body"]["error"]["message"]
    # A JSON split is fetched (size first) and its nesting checked before pyarrow reads it.
    assert json_ok["status"] == 201 and [r["answer"] for r in json_ok["rows"]] == ["0", "2", "4"]
    assert json_deep["status"] == 422 and "levels deep" in json_deep["body"]["error"]["message"]
    assert text["status"] == 422 and text["body"]["error"]["param"] == "hub_id"
    assert "'text'" in text["body"]["error"]["message"]
    assert out["datasets"] == 3  # the refused imports stored nothing
