"""The `basis` REST client commands, run against the in-process API (no server, same code path)."""

from __future__ import annotations

import json


def test_upload_create_follow_cancel(basis, tmp_path, model_dir):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2", "answer": "4"}\n')
    status, out, _ = basis("datasets", "upload", str(data), "--name", "tiny-math")
    assert status == 0
    dataset = json.loads(out)
    assert dataset["rows"] == 2
    assert dataset["id"] in basis("datasets", "list")[1]
    assert [line.split()[:3] for line in basis("models", "list")[1].splitlines()] == [["tiny", "local", "full"]]
    assert [m["id"] for m in json.loads(basis("models", "list", "--json")[1])] == ["tiny"]
    assert json.loads(basis("models", "get", "tiny")[1])["source"] == "local"

    config = tmp_path / "config.yaml"
    config.write_text("estimator: basis\nmax_steps: 5\nsampling:\n  temperature: 0.9\n")
    status, out, err = basis("jobs", "create", "--dataset", dataset["id"], "--model", "tiny",
                             "--config", str(config), "--set", "sampling.top_p=0.95", "--set", "batch_size=2")
    assert status == 0, err
    job = json.loads(out)
    assert job["config"]["sampling"] == {**job["config"]["sampling"], "temperature": 0.9, "top_p": 0.95}
    assert job["config"]["batch_size"] == 2 and job["max_steps"] == 5
    assert job["id"] in basis("jobs", "list", "--status", "queued")[1]
    assert json.loads(basis("jobs", "get", job["id"])[1])["status"] == "queued"
    assert json.loads(basis("jobs", "cancel", job["id"])[1])["status"] == "cancelled"
    status, out, _ = basis("jobs", "logs", job["id"], "--follow", "--interval", "0")
    assert status == 0 and "cancelled before it started" in out


def test_api_errors_are_one_line_on_stderr(basis, model_dir):
    status, out, err = basis("jobs", "create", "--dataset", "ds_nope", "--model", "tiny")
    assert status == 1 and out == ""
    assert err.strip() == "error: not_found: no dataset 'ds_nope' (dataset_id)"
    assert basis("jobs", "create", "--dataset", "x", "--model", "tiny", "--set", "novalue")[0] == 1
