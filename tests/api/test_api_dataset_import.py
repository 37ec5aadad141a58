"""POST /v1/datasets/import and `basis datasets import`: the sample files of examples/datasets/
through each answer preset, templates, system prompts, row errors, limits and isolation, on SQLite
and PostgreSQL. Nothing here is mocked: the `datasets` library reads real files."""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from cli.demo import demo_dataset
from cli.main import main
from core.models import Dataset
from core.settings import get_settings
from scripts.make_sample_datasets import DEMO_MAPPING, OUT

SAMPLES = OUT


def parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


@pytest.fixture
def do_import(client):
    """`do_import(headers, content, filename, **form)` -> response."""

    def post(headers, content: bytes | None = None, filename: str = "data.parquet", **form):
        files = None if content is None else {"file": (filename, content, "application/octet-stream")}
        return client.post("/v1/datasets/import", headers=headers, data=form, files=files)

    return post


def rows_of(client, headers, dataset_id: str) -> list[dict]:
    return client.get(f"/v1/datasets/{dataset_id}/rows?limit=100", headers=headers).json()["data"]


def nothing_stored(db, settings) -> bool:
    files = list(settings.datasets_dir.iterdir()) if settings.datasets_dir.exists() else []
    return db.scalar(select(func.count()).select_from(Dataset)) == 0 and files == []


def test_gsm8k_parquet_with_the_gsm8k_preset(client, do_import, alice):
    response = do_import(alice, (SAMPLES / "gsm8k_sample.parquet").read_bytes(), "gsm8k.parquet",
                         prompt_field="question", answer_field="answer", answer_preset="gsm8k",
                         name="gsm8k sample")
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["object"], body["name"], body["filename"], body["rows"]) == \
        ("dataset", "gsm8k sample", "gsm8k.parquet", 8)
    rows = rows_of(client, alice, body["id"])
    assert rows[0] == {"prompt": "Natalia buys 48 notebooks at $3 each and then pays $25 for "
                       "shipping. How many dollars does Natalia spend in all?", "answer": "169"}
    assert [r["answer"] for r in rows] == ["169", "1200", "150", "1740", "2550", "168", "3000", "2340"]


def test_math_json_with_boxed_template_system_prompt_and_kept_fields(client, do_import, alice):
    response = do_import(alice, (SAMPLES / "math_sample.json").read_bytes(), "math.json",
                         prompt_template="Problem ({type}): {problem}\nAnswer in \\boxed{{}}.",
                         system_prompt="You are a careful mathematician.", answer_field="solution",
                         answer_preset="boxed", keep_fields="level, type")
    assert response.status_code == 201, response.text
    rows = rows_of(client, alice, response.json()["id"])
    assert [r["answer"] for r in rows] == ["\\frac{5}{6}", "4", "6\\sqrt{2}", "2", "(2,-3)", "10"]
    assert rows[0]["prompt"] == [
        {"role": "system", "content": "You are a careful mathematician."},
        {"role": "user", "content": "Problem (Prealgebra): What is $\\frac{1}{2} + \\frac{1}{3}$?"
                                    "\nAnswer in \\boxed{}."}]
    assert (rows[0]["level"], rows[0]["type"]) == ("Level 1", "Prealgebra")


def test_keep_fields_repeated_keeps_them_all(client, do_import, alice):
    """`-F keep_fields=level -F keep_fields=type` keeps both (a single string form field kept only
    the last one, silently); a comma list in one part still works, and the names stay bounded."""
    response = do_import(alice, (SAMPLES / "math_sample.json").read_bytes(), "math.json",
                         prompt_field="problem", answer_field="solution", answer_preset="boxed",
                         keep_fields=["level", "type"])
    assert response.status_code == 201, response.text
    row = rows_of(client, alice, response.json()["id"])[0]
    assert (row["level"], row["type"]) == ("Level 1", "Prealgebra")
    response = do_import(alice, (SAMPLES / "math_sample.json").read_bytes(), "math.json",
                         prompt_field="problem", answer_field="solution", answer_preset="boxed",
                         keep_fields=["level"] * 400)
    assert response.status_code == 422 and response.json()["error"]["param"] == "keep_fields"


def test_plain_csv_and_jsonl(client, do_import, alice):
    response = do_import(alice, (SAMPLES / "plain_sample.csv").read_bytes(), "qa.csv",
                         prompt_field="question", answer_field="answer")
    assert response.status_code == 201, response.text
    rows = rows_of(client, alice, response.json()["id"])
    assert [r["answer"] for r in rows] == ["Paris", "Jupiter", "oxygen", "cat, dog", "6"]
    jsonl = b'{"q": "2+2", "a": " 4 ", "n": 7}\n{"q": "3+3", "a": 6, "n": 8}\n'
    response = do_import(alice, jsonl, "x.jsonl", prompt_field="q", answer_field="a", id_field="n")
    assert response.status_code == 201, response.text
    assert rows_of(client, alice, response.json()["id"]) == [
        {"id": 7, "prompt": "2+2", "answer": "4"}, {"id": 8, "prompt": "3+3", "answer": "6"}]


def test_the_demo_parquet_imports_to_exactly_the_demo_dataset(client, do_import, alice, settings):
    response = do_import(alice, (SAMPLES / "demo_arithmetic.parquet").read_bytes(),
                         "demo_arithmetic.parquet", **DEMO_MAPPING)
    assert response.status_code == 201, response.text
    expected = demo_dataset()
    body = response.json()
    assert body["rows"] == 4000 and body["sha256"] == hashlib.sha256(expected).hexdigest()
    assert (settings.datasets_dir / f"{body['id']}.jsonl").read_bytes() == expected


def test_a_job_takes_an_imported_dataset(client, do_import, alice, create_job):
    response = do_import(alice, (SAMPLES / "gsm8k_sample.parquet").read_bytes(),
                         prompt_field="question", answer_field="answer", answer_preset="gsm8k")
    job = create_job(alice, response.json()["id"])
    assert job.status_code == 201, job.text


def test_max_rows_imports_the_first_rows(client, do_import, alice):
    response = do_import(alice, (SAMPLES / "demo_arithmetic.parquet").read_bytes(),
                         max_rows="3", **DEMO_MAPPING)
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 3
    assert [r["id"] for r in rows_of(client, alice, response.json()["id"])] == \
        ["arith-0-0", "arith-0-1", "arith-0-2"]


BAD_ROWS = {
    # name: (rows, form, status, param, words in the message)
    "gsm8k answer without ####": (
        [{"q": "a", "s": "#### 1"}, {"q": "b", "s": "2"}], {"answer_preset": "gsm8k"}, 422,
        "row 2, field s", "'#### <answer>'"),
    "unbalanced boxed": (
        [{"q": "a", "s": "\\boxed{\\frac{1}{2}"}], {"answer_preset": "boxed"}, 422,
        "row 1, field s", "not closed"),
    "no boxed": ([{"q": "a", "s": "\\boxed{1}"}, {"q": "b", "s": "1"}],
                 {"answer_preset": "boxed"}, 422, "row 2, field s", "no \\boxed"),
    "null prompt": ([{"q": "a", "s": "1"}, {"q": "b", "s": "2"}, {"q": None, "s": "3"}], {}, 422,
                    "row 3, field q", "got null"),
    "empty answer": ([{"q": "a", "s": "   "}], {}, 422, "row 1, field s", "is empty"),
    "empty prompt": ([{"q": " ", "s": "1"}], {}, 422, "row 1, field q", "is empty"),
    "duplicate id": ([{"q": "a", "s": "1", "k": "x"}, {"q": "b", "s": "2", "k": "x"}],
                     {"id_field": "k"}, 422, "row 2, field k", "duplicate id 'x' (first in row 1)"),
    "unknown prompt field": ([{"q": "a", "s": "1"}], {"prompt_field": "question"}, 422,
                             "prompt_field", "unknown field 'question'"),
    "unknown answer field": ([{"q": "a", "s": "1"}], {"answer_field": "answer"}, 422,
                             "answer_field", "'q', 's'"),
    "unknown template field": ([{"q": "a", "s": "1"}],
                               {"prompt_field": None, "prompt_template": "Q: {q} {nope}"}, 422,
                               "prompt_template", "unknown field 'nope'"),
    "unknown kept field": ([{"q": "a", "s": "1"}], {"keep_fields": "q,zzz"}, 422, "keep_fields",
                           "unknown field 'zzz'"),
    "template attribute access": ([{"q": "a", "s": "1"}],
                                  {"prompt_field": None, "prompt_template": "{q.__class__}"}, 422,
                                  "prompt_template", "not a plain field name"),
    "template index": ([{"q": "a", "s": "1"}],
                       {"prompt_field": None, "prompt_template": "{q[0]}"}, 422,
                       "prompt_template", "not a plain field name"),
    "template conversion": ([{"q": "a", "s": "1"}],
                            {"prompt_field": None, "prompt_template": "{q!r:>10}"}, 422,
                            "prompt_template", "not a plain field name"),
    "template stray brace": ([{"q": "a", "s": "1"}],
                             {"prompt_field": None, "prompt_template": "x } {q}"}, 422,
                             "prompt_template", "{{ or }}"),
    "both prompt forms": ([{"q": "a", "s": "1"}], {"prompt_template": "{q}"}, 422, "prompt_field",
                          "exactly one"),
    # pyarrow refuses it while reading (an imported row never reaches the store with one).
    "lone surrogate": ([{"q": "a\ud800", "s": "1"}], {}, 422, "file", "surrogate"),
    "system prompt and a system message": (
        [{"q": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], "s": "1"}],
        {"system_prompt": "Be brief."}, 422, "row 1, field q", "already has a system message"),
    "bad chat role": ([{"q": [{"role": "usr", "content": "y"}], "s": "1"}], {}, 422,
                      "row 1, field q", "role must be one of"),
    "keep a reserved name": ([{"q": "a", "s": "1"}], {"keep_fields": "prompt"}, 422, "keep_fields",
                             "cannot keep 'prompt'"),
    "bad preset": ([{"q": "a", "s": "1"}], {"answer_preset": "latex"}, 422, "answer_preset", ""),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_rows_and_mappings_are_refused_naming_the_row_and_field(do_import, alice, db, settings,
                                                                     case):
    rows, form, status, param, words = BAD_ROWS[case]
    fields = {"prompt_field": "q", "answer_field": "s", **form}
    fields = {k: v for k, v in fields.items() if v is not None}
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    response = do_import(alice, content, "rows.jsonl", **fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert words in error["message"], error
    assert nothing_stored(db, settings)


def test_integers_past_64_bits_are_refused_not_read_as_inf(do_import, alice, db, settings):
    huge = "7" * 5000
    answer = f'{{"q": "a", "s": 1}}\n{{"q": "b", "s": {huge}}}\n'.encode()
    response = do_import(alice, answer, "big.jsonl", prompt_field="q", answer_field="s")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "row 2, field s"
    assert "not a finite number" in response.json()["error"]["message"]
    kept = f'{{"q": "a", "s": "1", "n": {huge}}}\n'.encode()
    response = do_import(alice, kept, "big.jsonl", prompt_field="q", answer_field="s",
                         keep_fields="n")
    assert response.status_code == 422 and response.json()["error"]["param"] == "row 1, field n"
    assert nothing_stored(db, settings)
    csv = f"q,s,n\na,1,{huge}\n".encode()  # CSV keeps it as text: stored as the text it is
    response = do_import(alice, csv, "big.csv", prompt_field="q", answer_field="s", keep_fields="n")
    assert response.status_code == 201, response.text


def test_a_bad_row_deep_in_a_parquet_file_stores_nothing(do_import, alice, db, settings):
    rows = [{"question": f"{i}+1", "answer": f"#### {i + 1}"} for i in range(5000)]
    rows[4321]["answer"] = "I forgot the marker"
    response = do_import(alice, parquet(rows), prompt_field="question", answer_field="answer",
                         answer_preset="gsm8k")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "row 4322, field answer"
    assert nothing_stored(db, settings)


@pytest.mark.parametrize("filename, content, status, words", [
    ("data.txt", b"q,s\na,1\n", 415, "cannot tell the format of 'data.txt'"),
    ("data.parquet", b'{"q": "a", "s": "1"}\n', 422, "cannot read"),
    ("data.csv", b"q,s\n", 422, "no rows"),
    ("data.csv", b"", 422, "cannot read"),
    ("data.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", 422, "cannot read"),
])
def test_bad_files_are_refused(do_import, alice, db, settings, filename, content, status, words):
    response = do_import(alice, content, filename, prompt_field="q", answer_field="s")
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == "file"
    assert words in response.json()["error"]["message"]
    assert nothing_stored(db, settings)


def test_a_format_field_reads_a_file_whose_name_does_not_say(client, do_import, alice):
    response = do_import(alice, b"q,s\na,1\n", "upload.bin", format="csv", prompt_field="q",
                         answer_field="s")
    assert response.status_code == 201, response.text


def test_sources_are_a_file_or_a_hub_id_never_a_server_path(do_import, alice, db, settings,
                                                            monkeypatch, tmp_path):
    form = {"prompt_field": "q", "answer_field": "s"}
    response = do_import(alice, **form)
    assert response.status_code == 422 and response.json()["error"]["param"] == "file"
    both = do_import(alice, b"q,s\na,1\n", "a.csv", hub_id="org/name", **form)
    assert both.status_code == 422 and both.json()["error"]["param"] == "hub_id"
    for hub_id in ["/etc/passwd", "../../data", "~/x", "json", "a/b/c", "./org/name", "org/.."]:
        response = do_import(alice, hub_id=hub_id, **form)
        assert response.status_code == 422, (hub_id, response.text)
        assert response.json()["error"]["param"] == "hub_id", hub_id
    # An id that also names a directory in the server's working directory would be read locally.
    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "name" / "train.jsonl").write_text('{"q": "secret", "s": "1"}\n')
    monkeypatch.chdir(tmp_path)
    response = do_import(alice, hub_id="org/name", **form)
    assert response.status_code == 422 and "path on the server" in response.json()["error"]["message"]
    for param, value in [("config", "../x"), ("split", "train/../x"), ("revision", "a b")]:
        response = do_import(alice, hub_id="org/name2", **form, **{param: value})
        assert response.status_code == 422 and response.json()["error"]["param"] == param
    assert nothing_stored(db, settings)


def test_limits_on_file_bytes_rows_and_stored_bytes(app, do_import, alice, db, settings):
    rows = [{"q": f"{i}+1", "s": str(i + 1)} for i in range(50)]
    content = parquet(rows)
    settings.max_upload_bytes = len(content) - 1  # the source file itself is refused first
    response = do_import(alice, content, prompt_field="q", answer_field="s")
    assert response.status_code == 413 and response.json()["error"]["param"] == "file"
    settings.max_upload_bytes = len(content) + 1  # the file fits; the JSONL it becomes does not
    response = do_import(alice, content, prompt_field="q", answer_field="s")
    assert response.status_code == 413, response.text
    assert response.json()["error"]["param"].startswith("row ")
    settings.max_upload_bytes = 1 << 20
    settings.max_dataset_rows = 20
    response = do_import(alice, content, prompt_field="q", answer_field="s")  # by the footer
    assert response.status_code == 413 and response.json()["error"]["param"] == "file"
    assert "has 50 rows" in response.json()["error"]["message"]
    assert do_import(alice, content, prompt_field="q", answer_field="s",
                     max_rows="20").status_code == 201
    jsonl = "".join(json.dumps(row) + "\n" for row in rows).encode()  # counted while read
    response = do_import(alice, jsonl, "rows.jsonl", prompt_field="q", answer_field="s")
    assert response.status_code == 413 and response.json()["error"]["param"] == "row 21"
    settings.max_dataset_rows = 1000
    settings.max_line_bytes = 40
    response = do_import(alice, parquet([{"q": "x" * 100, "s": "1"}]), prompt_field="q",
                         answer_field="s")
    assert response.status_code == 422 and response.json()["error"]["param"] == "row 1"
    settings.max_line_bytes = 1 << 20
    settings.max_json_depth = 3
    deep = parquet([{"q": "a", "s": "1", "x": [[[[1]]]]}])
    response = do_import(alice, deep, prompt_field="q", answer_field="s", keep_fields="x")
    assert response.status_code == 422 and "nested deeper" in response.json()["error"]["message"]
    settings.max_json_depth = 32
    settings.quota_dataset_bytes = 10
    response = do_import(alice, content, prompt_field="q", answer_field="s")
    assert response.status_code == 507, response.text
    with db.begin():
        db.execute(Dataset.__table__.delete())
    for path in settings.datasets_dir.iterdir():
        path.unlink()


def test_a_parquet_row_group_too_big_to_decode_is_refused_from_the_footer(do_import, alice, db,
                                                                          settings):
    settings.max_upload_bytes = 30_000
    unused = parquet([{"q": "x", "s": "1", "unused": f"{i}" + "y" * 100_000} for i in range(5)])
    assert len(unused) < 30_000  # compressed; 500 kB decoded, but never decoded: not mapped
    assert do_import(alice, unused, prompt_field="q", answer_field="s").status_code == 201
    rows = [{"q": f"{i}" + "x" * 100_000, "s": "1"} for i in range(20)]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=10)
    settings.max_upload_bytes = len(buffer.getvalue()) + 1  # the file fits, a row group does not
    response = do_import(alice, buffer.getvalue(), prompt_field="q", answer_field="s")
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["param"] == "file" and "row group 0" in error["message"]


@pytest.mark.parametrize("filename", ["deep.jsonl", "deep.json"])
def test_json_nested_without_end_is_refused_before_pyarrow_parses_it(do_import, alice, db,
                                                                     settings, filename):
    """pyarrow's JSON reader dies with SIGSEGV on 100,000 levels: the API process must survive."""
    row = b'{"q": "a", "s": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    content = row + b"\n" if filename.endswith("l") else b"[" + row + b"]"
    response = do_import(alice, content, filename, prompt_field="q", answer_field="s")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "file"
    assert "levels deep" in response.json()["error"]["message"]
    assert nothing_stored(db, settings)
    brackets_in_text = b'{"q": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "s": "1"}\n'
    assert do_import(alice, brackets_in_text, "text.jsonl", prompt_field="q",
                     answer_field="s").status_code == 201


def test_imports_are_isolated_by_owner(client, do_import, alice, bob):
    response = do_import(alice, (SAMPLES / "plain_sample.csv").read_bytes(), "qa.csv",
                         prompt_field="question", answer_field="answer")
    dataset_id = response.json()["id"]
    assert client.get(f"/v1/datasets/{dataset_id}", headers=bob).status_code == 404
    assert client.get("/v1/datasets", headers=bob).json()["data"] == []
    assert [d["id"] for d in client.get("/v1/datasets", headers=alice).json()["data"]] == [dataset_id]
    assert do_import({}, b"q,s\na,1\n", "a.csv", prompt_field="q",
                     answer_field="s").status_code == 401


@pytest.fixture
def basis(client, alice, monkeypatch, capsys):
    monkeypatch.setenv("BASIS_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    get_settings.cache_clear()

    def run(*argv: str):
        status = main(list(argv), http=client)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    yield run
    get_settings.cache_clear()


def test_cli_imports_a_local_file_and_reports_row_errors(basis, client, alice, tmp_path):
    status, out, err = basis("datasets", "import", str(SAMPLES / "gsm8k_sample.parquet"),
                             "--prompt-field", "question", "--answer-field", "answer",
                             "--preset", "gsm8k", "--max-rows", "2", "--name", "gsm8k-2")
    assert status == 0, err
    dataset = json.loads(out)
    assert (dataset["rows"], dataset["name"]) == (2, "gsm8k-2")
    assert [r["answer"] for r in rows_of(client, alice, dataset["id"])] == ["169", "1200"]
    status, out, err = basis("datasets", "import", str(SAMPLES / "math_sample.json"),
                             "--template", "{problem}", "--answer-field", "solution",
                             "--preset", "gsm8k")
    assert status == 1 and out == ""
    assert err.strip() == ("error: invalid_request: row 1, field 'solution': has no '#### <answer>' "
                           "final answer (answer_preset gsm8k) (row 1, field solution)")
    assert basis("datasets", "import", str(tmp_path / "nope.csv"), "--prompt-field", "q",
                 "--answer-field", "a")[0] == 1
    status, _, err = basis("datasets", "import", "--prompt-field", "q", "--answer-field", "a")
    assert status == 1 and "--hub" in err


def test_the_readme_demo_import_command_gives_the_demo_dataset(basis):
    """README, "Importing a dataset": the mapping documented there is DEMO_MAPPING."""
    status, out, err = basis("datasets", "import", str(SAMPLES / "demo_arithmetic.parquet"),
                             "--name", "arithmetic-demo", "--id-field", "uid", "--template",
                             "{expression}=", "--answer-field", "solution", "--preset", "gsm8k",
                             "--keep", "difficulty,level")
    assert status == 0, err
    assert json.loads(out)["sha256"] == hashlib.sha256(demo_dataset()).hexdigest()
    readme = (OUT.parents[1] / "README.md").read_text()
    assert ("--id-field uid --template '{expression}=' --answer-field solution --preset gsm8k \\\n"
            "  --keep difficulty,level") in readme
    assert DEMO_MAPPING == {"id_field": "uid", "prompt_template": "{expression}=",
                            "answer_field": "solution", "answer_preset": "gsm8k",
                            "keep_fields": "difficulty,level"}
