"""Datasets: upload, list, get, rows, delete; bad uploads are refused and leave nothing behind."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import func, select

from core.models import Dataset

GOOD_ROWS = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
GOOD_JSONL = "".join(json.dumps(row) + "\n" for row in GOOD_ROWS).encode()  # = conftest's default


def stored_files(settings) -> list:
    directory = settings.datasets_dir
    return sorted(directory.iterdir()) if directory.exists() else []


def assert_nothing_left(db, settings):
    assert db.scalar(select(func.count()).select_from(Dataset)) == 0
    assert stored_files(settings) == []


def test_upload_stores_file_and_row(upload, alice, db, settings):
    response = upload(alice, name="arith")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["object"] == "dataset" and body["id"].startswith("ds_")
    assert (body["name"], body["filename"], body["rows"]) == ("arith", "train.jsonl", len(GOOD_ROWS))
    assert body["bytes"] == len(GOOD_JSONL) and body["sha256"] == hashlib.sha256(GOOD_JSONL).hexdigest()
    [path] = stored_files(settings)
    assert path.read_bytes() == GOOD_JSONL
    assert db.get(Dataset, body["id"]).path == f"datasets/{path.name}"


def test_list_get_rows_delete(client, upload, alice, settings):
    ids = [upload(alice).json()["id"] for _ in range(3)]
    first = client.get("/v1/datasets?limit=2", headers=alice).json()
    assert [d["id"] for d in first["data"]] == ids[::-1][:2] and first["has_more"]
    second = client.get(f"/v1/datasets?limit=2&after={first['next_cursor']}", headers=alice).json()
    assert [d["id"] for d in second["data"]] == [ids[0]] and not second["has_more"]
    assert second["next_cursor"] is None
    assert client.get(f"/v1/datasets/{ids[0]}", headers=alice).json()["rows"] == 5
    rows = client.get(f"/v1/datasets/{ids[0]}/rows?offset=1&limit=2", headers=alice).json()
    assert rows["data"] == GOOD_ROWS[1:3] and rows["has_more"] and rows["next_cursor"] == "3"
    assert client.delete(f"/v1/datasets/{ids[0]}", headers=alice).status_code == 204
    assert client.get(f"/v1/datasets/{ids[0]}", headers=alice).status_code == 404
    assert len(stored_files(settings)) == 2


def test_another_owner_sees_nothing(client, alice, bob, dataset):
    for method, path in [("GET", f"/v1/datasets/{dataset['id']}"),
                         ("GET", f"/v1/datasets/{dataset['id']}/rows"),
                         ("DELETE", f"/v1/datasets/{dataset['id']}")]:
        response = client.request(method, path, headers=bob)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert client.get("/v1/datasets", headers=bob).json()["data"] == []
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 200


BAD_FILES = {
    "malformed json": (b'{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": \n', "file:line 2"),
    "missing prompt": (b'{"prompt": "a", "answer": "1"}\n\n{"answer": "2"}\n', "file:line 3"),
    "answer not a string": (b'{"prompt": "a", "answer": ["1"]}\n', "file:line 1"),
    "not an object": (b'["prompt", "answer"]\n', "file:line 1"),
    "bad chat message": (b'{"prompt": [{"role": "user"}], "answer": "1"}\n', "file:line 1"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "file:line 1"),
    "latin-1": ('{"prompt": "caf\u00e9", "answer": "1"}\n'.encode("latin-1"), "file:line 1"),
    "deeply nested": (b'{"prompt": "a", "answer": "1", "x": ' + b"[" * 100 + b"]" * 100 + b"}\n",
                      "file:line 1"),
    "very deeply nested": (b'{"prompt": "a", "answer": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000
                           + b"}\n", "file:line 1"),
    "empty": (b"\n\n  \n", "file"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_jsonl_is_refused_with_its_line(upload, alice, db, settings, case):
    content, param = BAD_FILES[case]
    response = upload(alice, content)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == "invalid_request"
    if param != "file":
        assert f"line {param.split()[-1]}" in error["message"]
    assert_nothing_left(db, settings)


def test_absurd_line_length_is_refused(upload, alice, db, settings):
    settings.max_line_bytes = 1000
    line = json.dumps({"prompt": "x" * 2000, "answer": "1"}).encode()
    response = upload(alice, GOOD_JSONL + line + b"\n")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == f"file:line {len(GOOD_ROWS) + 1}"
    assert_nothing_left(db, settings)


def test_too_many_rows_is_refused(upload, alice, db, settings):
    settings.max_dataset_rows = 3
    response = upload(alice)
    assert response.status_code == 413 and response.json()["error"]["param"] == "file"
    assert_nothing_left(db, settings)


def test_oversize_upload_is_refused(client, upload, alice, db, settings):
    settings.max_upload_bytes = limit = 200_000
    big = GOOD_JSONL * (limit // len(GOOD_JSONL) + 1)
    response = upload(alice, big)  # within the multipart slack: refused by the service while reading
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"
    much_bigger = upload(alice, big * 2)  # refused by the middleware from Content-Length
    assert much_bigger.status_code == 413
    assert_nothing_left(db, settings)


def test_oversize_chunked_upload_is_refused_while_streaming(client, alice, db, settings):
    settings.max_upload_bytes = limit = 200_000

    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=a.jsonl\r\n\r\n"
        for _ in range(limit // 65536 + 4):
            yield GOOD_JSONL * (65536 // len(GOOD_JSONL))
        yield b"\r\n--b--\r\n"

    response = client.post("/v1/datasets", headers={**alice, "content-type": "multipart/form-data; boundary=b"},
                           content=body())
    assert response.status_code == 413, response.text
    assert_nothing_left(db, settings)


@pytest.mark.parametrize("content_type", ["image/png", "application/zip", "text/html"])
def test_wrong_content_type_is_refused(upload, alice, db, settings, content_type):
    response = upload(alice, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"] == {"code": "unsupported_media_type", "param": "file",
                                        "message": response.json()["error"]["message"]}
    assert_nothing_left(db, settings)


def test_missing_file_field_is_a_422(client, alice, db, settings):
    response = client.post("/v1/datasets", headers=alice, data={"name": "x"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "file"
    response = client.post("/v1/datasets", headers={**alice, "content-type": "application/json"},
                           content=b'{"file": 1}')
    assert response.status_code == 422
    assert_nothing_left(db, settings)


def test_filenames_cannot_escape(upload, alice, settings):
    body = upload(alice, filename="../../etc/passwd").json()
    assert body["filename"] == "passwd"
    assert [p.parent for p in stored_files(settings)] == [settings.datasets_dir]


def test_rows_of_a_dataset_whose_file_vanished_is_a_404(client, alice, dataset, settings):
    for path in stored_files(settings):
        path.unlink()
    response = client.get(f"/v1/datasets/{dataset['id']}/rows", headers=alice)
    assert response.status_code == 404 and "missing" in response.json()["error"]["message"]
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 204
