"""Fault 6: hostile or broken input. Nothing a client sends may cause a 5xx, and a refused upload or
job must leave nothing behind (no row, no file, nothing enqueued).

- 6a: schemathesis generates requests from the OpenAPI schema, valid ones and deliberately invalid
  ones (its negative mode), for every operation, with a valid key, half of them aimed at real
  resources so they get past the 404 into the handlers. Bounded (`EXAMPLES` per operation and mode)
  so the run stays well under two minutes per database backend.
- 6b-6d: dataset uploads that are huge (declared or chunked), binary, not UTF-8, nested without
  end, with absurd lines or too many rows.
- 6e: model names that are paths.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from sqlalchemy import func, select

from core.models import Dataset, Job
from tests.security.conftest import GOOD_JSONL, JOB_CONFIG

EXAMPLES = int(os.environ.get("BASIS_FUZZ_EXAMPLES", "15"))


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def _count(world, model) -> int:
    with world.app.state.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(model))


def _assert_error_envelope(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "param"} <= set(body["error"]), body
    assert body["error"]["message"], body
    return body["error"]


# --------------------------------------------------------------------------- 6a schemathesis


def _fuzz(strategy, examples: int, check) -> None:
    """Run `check(case)` on `examples` cases drawn from `strategy` (derandomized: reproducible)."""

    @hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        check(case)

    run()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(world, capsys):
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
    auth = {"Authorization": world.alice.headers["Authorization"]}
    real_ids = dict(world.alice.ids)
    tried: dict[str, int] = {}
    statuses: dict[int, int] = {}
    server_errors: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label == "GET /v1/health":
            continue
        params = {p: real_ids[p] for p in real_ids if "{" + p + "}" in operation.path}
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        strategies = [operation.as_strategy(mode, headers=auth) for mode in modes]
        if params:  # the same again on real resources, so requests reach the handler's logic
            strategies += [operation.as_strategy(mode, headers=auth, path_parameters=params)
                           for mode in modes]

        def check(case, label=label):
            response = case.call(headers=auth)
            tried[label] = tried.get(label, 0) + 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{label}: {response.status_code} {response.text[:300]} "
                                     f"for {case.as_curl_command()}")
            elif response.status_code >= 400 and response.status_code != 405:
                _assert_error_envelope(response)

        _fuzz(st.one_of(strategies), EXAMPLES * len(strategies), check)

    assert len(tried) >= 15, tried
    assert server_errors == [], "\n".join(server_errors[:10])
    with capsys.disabled():
        print(f"\nFIGURES schemathesis: {sum(tried.values())} requests over {len(tried)} "
              f"operations, statuses {dict(sorted(statuses.items()))}, 5xx: {len(server_errors)}")


# --------------------------------------------------------------------------- 6b-6d uploads


def _deep(depth: int) -> bytes:
    return (b'{"prompt": "p", "answer": "a", "x": ' + b"[" * depth + b"]" * depth + b"}\n")


def _uploads(settings) -> dict[str, tuple[object, str, int, str]]:
    """name -> (body, content type, expected status, words the error message must contain)."""
    rng = random.Random(8)
    line = settings.max_line_bytes
    return {
        "huge, declared length": (b"x" * (settings.max_upload_bytes + 200_000),
                                  "application/jsonl", 413, "limit"),
        "huge, chunked without length": (None, "application/jsonl", 413, "limit"),
        "random binary": (bytes(rng.randrange(256) for _ in range(4096)),
                          "application/octet-stream", 422, "line 1"),
        "a PNG": (b"\x89PNG\r\n\x1a\n" + bytes(200), "application/octet-stream", 422, "line 1"),
        "NUL bytes in a line": (b'{"prompt": "a\x00b", "answer": "1"}\n', "application/jsonl", 422, "NUL"),
        "latin-1, not UTF-8": ('{"prompt": "caf\u00e9", "answer": "1"}\n'.encode("latin-1"),
                               "application/jsonl", 422, "UTF-8"),
        "nested 100,000 deep": (_deep(100_000), "application/jsonl", 422, "line 1"),
        "nested one past the limit": (GOOD_JSONL + _deep(settings.max_json_depth),
                                      "application/jsonl", 422, "nested deeper"),
        "one absurd line": (b'{"prompt": "' + b"a" * (line + 10) + b'", "answer": "1"}\n',
                            "application/jsonl", 422, "limit"),
        "too many rows": (GOOD_JSONL * (settings.max_dataset_rows // 4 + 1), "application/jsonl",
                          413, "rows"),
        "a JSON array": (json.dumps([{"prompt": "p", "answer": "a"}]).encode(), "application/json",
                         422, "line 1"),
        "empty": (b"", "application/jsonl", 422, "no rows"),
        "only blank lines": (b"\n \n\t\n", "application/jsonl", 422, "no rows"),
        "rows without answers": (b'{"prompt": "p"}\n', "application/jsonl", 422, "answer"),
        "an image content type": (GOOD_JSONL, "image/png", 415, "content type"),
    }


def _post_upload(world, name, body, content_type):
    if body is None:  # streamed: no Content-Length, cut off by the middleware at the limit
        size = world.app.state.settings.max_upload_bytes + 200_000
        boundary = "hostileboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"big.jsonl\"\r\nContent-Type: {content_type}\r\n\r\n").encode()

        def chunks():
            yield head
            for _ in range(size // 65536 + 1):
                yield b"x" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        return world.client.post("/v1/datasets", headers={
            **world.alice.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            content=chunks())
    return world.client.post("/v1/datasets", headers=world.alice.headers,
                             files={"file": (f"{name}.jsonl", body, content_type)})


def test_hostile_uploads_are_refused_and_leave_nothing_behind(world, settings, capsys):
    # Small limits, so "huge" is cheap to send; the code path is the one the defaults take.
    settings.max_upload_bytes = 256 * 1024
    settings.max_line_bytes = 16 * 1024
    settings.max_dataset_rows = 200
    cases = _uploads(settings)
    rows, files = _count(world, Dataset), _files_under(settings.storage_dir)
    for name, (body, content_type, status, words) in cases.items():
        response = _post_upload(world, name, body, content_type)
        assert response.status_code == status, (name, response.status_code, response.text[:300])
        error = _assert_error_envelope(response)
        assert words in error["message"], (name, error)
        assert _count(world, Dataset) == rows, f"{name}: a row was left behind"
        assert _files_under(settings.storage_dir) == files, f"{name}: a file was left behind"
    with capsys.disabled():
        print(f"\nFIGURES uploads: {len(cases)} hostile uploads refused, rows/files left: 0")


def test_uploaded_filenames_never_choose_where_the_file_goes(world, settings, tmp_path):
    outside = _files_under(tmp_path)
    for filename in ("../../../../evil.jsonl", "/etc/cron.d/evil", "..\\..\\evil.jsonl",
                     "a/b/../../../evil.jsonl", "evil\x00.jsonl"):
        response = world.client.post("/v1/datasets", headers=world.alice.headers,
                                     files={"file": (filename, GOOD_JSONL, "application/jsonl")})
        assert response.status_code == 201, (filename, response.text)
        stored = settings.storage_dir / "datasets" / f"{response.json()['id']}.jsonl"
        assert stored.read_bytes() == GOOD_JSONL
        assert "/" not in response.json()["filename"] and ".." != response.json()["filename"]
    new = _files_under(tmp_path) - outside
    assert all(path.startswith(str(settings.storage_dir.relative_to(tmp_path))) for path in new), new


# --------------------------------------------------------------------------- 6e model names


@pytest.fixture
def outside_model(tmp_path) -> Path:
    """A valid model directory outside every model root: what a path would try to reach."""
    path = tmp_path / "outside" / "secret-model"
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen2"}')
    return path


def _model_names(model_dir: Path, outside: Path) -> list[str]:
    return [
        "../tiny", "../../../../etc/passwd", "..", ".", "./tiny", "tiny/..", "tiny/../tiny",
        "tiny/../../outside/secret-model", "/etc", "/etc/passwd", str(model_dir), str(outside),
        str(model_dir.parent), "~/tiny", "~root", "tiny/", "/tiny", "tiny\\..\\..",
        "..\\..\\windows", "C:\\Windows\\System32", "file:///etc/passwd", "%2e%2e/tiny",
        "..%2ftiny", "\uff0e\uff0e/tiny", "tiny\x00", "tiny\n", " tiny", "tiny ", "a" * 300,
        "tiny/" + "a/" * 3 + "b", "", "outside/secret-model",
    ]


def test_model_names_that_are_paths_are_refused(world, model_dir, outside_model):
    names = _model_names(model_dir, outside_model)
    jobs, enqueued = _count(world, Job), list(world.enqueued)
    for name in names:
        response = world.client.post("/v1/jobs", headers=world.alice.headers, json={
            "dataset_id": world.alice.ids["dataset_id"], "model": name, "config": JOB_CONFIG})
        assert response.status_code in (404, 422), (name, response.status_code, response.text)
        assert _assert_error_envelope(response)["param"] == "model", (name, response.text)
    assert _count(world, Job) == jobs and world.enqueued == enqueued
    listed = world.client.get("/v1/models", headers=world.alice.headers).json()["data"]
    # The root's model and Alice's own export; nothing outside the roots, nobody else's export.
    assert sorted(m["id"] for m in listed) == sorted(["tiny", world.alice.ids["name"]])
    print(f"\nFIGURES model names: {len(names)} path-like names refused, jobs created 0")


def test_an_oversized_form_field_is_a_413_saying_which_fields_are_short(world):
    """A 2 MB prompt template (or any text field) is cut off by the multipart parser before the
    route's own `max_length`: still a 413 in the error envelope saying what to do, never a bare 400."""
    big = "a" * (2 * 1024 * 1024) + "{prompt}"
    for field in ("prompt_template", "system_prompt"):
        response = world.client.post("/v1/datasets/import", headers=world.alice.headers, files={
            "file": ("x.jsonl", GOOD_JSONL, "application/octet-stream")}, data={
            "answer_field": "answer", field: big,
            **({} if field == "prompt_template" else {"prompt_field": "prompt"})})
        assert response.status_code == 413, response.text[:300]
        error = _assert_error_envelope(response)
        assert error["param"] == "form" and "prompt_template" in error["message"], error
    # Under the parser's limit, the route's own limit names the field.
    response = world.client.post("/v1/datasets/import", headers=world.alice.headers, files={
        "file": ("x.jsonl", GOOD_JSONL, "application/octet-stream")}, data={
        "answer_field": "answer", "prompt_template": "a" * 30_000 + "{prompt}"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "prompt_template"
