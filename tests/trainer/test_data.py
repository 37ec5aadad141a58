"""Dataset loading/validation, split, prompt rendering and the resumable prompt sampler."""

import json

import numpy as np
import pytest

from trainer.data import (
    DatasetError,
    PromptSampler,
    Row,
    TooManyRows,
    load_jsonl,
    parse_jsonl_bytes,
    render_prompt,
    split,
    validate_jsonl_bytes,
)


def _jsonl(*objs) -> bytes:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs).encode() + b"\n"


GOOD = {"prompt": "1+1=", "answer": "2"}


def test_loads_text_and_chat_rows_keeping_extras(arithmetic_jsonl):
    rows = load_jsonl(arithmetic_jsonl)
    assert len(rows) == 200 and rows[0].id == "arith-0-0" and rows[0].extra["difficulty"] >= 0
    chat = parse_jsonl_bytes(_jsonl(
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
         "answer": 4, "source": "x"}))
    assert chat[0].is_chat and chat[0].answer == "4" and chat[0].extra == {"source": "x"}
    assert chat[0].id == "line-1"


def test_missing_ids_use_the_line_number_and_blank_lines_still_count():
    rows = parse_jsonl_bytes(b'\n{"prompt": "a", "answer": "b"}\n\n{"prompt": "c", "answer": "d", "id": 7}\n')
    assert [(r.id, r.line) for r in rows] == [("line-2", 2), ("7", 4)]


@pytest.mark.parametrize("line, field, needle", [
    ("{not json", None, "not valid JSON"),
    ("[1, 2]", None, "JSON object"),
    ({"answer": "2"}, "prompt", "missing"),
    ({"prompt": "   ", "answer": "2"}, "prompt", "empty"),
    ({"prompt": [], "answer": "2"}, "prompt", "empty list"),
    ({"prompt": 5, "answer": "2"}, "prompt", "got a int"),
    ({"prompt": "1+1=", "answer": None}, "answer", "missing"),
    ({"prompt": "1+1=", "answer": True}, "answer", "bool"),
    ({"prompt": "1+1=", "answer": ["2"]}, "answer", "list"),
    ({"prompt": [{"role": "usr", "content": "hi"}], "answer": "2"}, "prompt[0].role", "usr"),
    ({"prompt": [{"role": "user", "content": 3}], "answer": "2"}, "prompt[0].content", "string"),
    ({"prompt": ["hi"], "answer": "2"}, "prompt[0]", "object"),
    ({"prompt": "a", "answer": "2", "id": ""}, "id", "non-empty"),
])
def test_bad_rows_name_line_and_field(line, field, needle):
    with pytest.raises(DatasetError) as info:
        parse_jsonl_bytes(_jsonl(GOOD, line))
    assert info.value.line == 2 and info.value.field == field
    assert str(info.value).startswith("line 2: ") and needle in str(info.value)
    if field:
        assert f"field '{field}'" in str(info.value)


def test_duplicate_ids_name_both_lines():
    with pytest.raises(DatasetError, match=r"line 3: field 'id': duplicate id 'a' \(first on line 1\)"):
        parse_jsonl_bytes(_jsonl({**GOOD, "id": "a"}, {**GOOD, "id": "b"}, {**GOOD, "id": "a"}))


def test_empty_file_non_utf8_and_long_lines(monkeypatch):
    with pytest.raises(DatasetError, match="no rows"):
        parse_jsonl_bytes(b"\n  \n")
    with pytest.raises(DatasetError, match="line 1: is not valid UTF-8"):
        parse_jsonl_bytes(b'{"prompt": "\xff", "answer": "1"}\n')
    monkeypatch.setattr("trainer.data.MAX_LINE_BYTES", 10)
    with pytest.raises(DatasetError, match="line 1: is 31 bytes; the limit is 10"):
        parse_jsonl_bytes(b'{"prompt": "1+1=", "answer": 2}')


def test_validate_bytes_raises_or_reports_every_error():
    data = _jsonl(GOOD, "oops", {"prompt": "", "answer": "1"}, GOOD)
    with pytest.raises(DatasetError) as info:
        validate_jsonl_bytes(data)
    assert info.value.line == 2
    report = validate_jsonl_bytes(data, raise_on_error=False)
    assert report.rows == 2 and [e.line for e in report.errors] == [2, 3] and not report.ok
    assert validate_jsonl_bytes(_jsonl(GOOD, GOOD)).rows == 2
    with pytest.raises(DatasetError, match="more than 1 rows"):
        validate_jsonl_bytes(_jsonl(GOOD, GOOD), max_rows=1)
    assert not validate_jsonl_bytes(b"", raise_on_error=False).ok


def test_upload_limits_are_off_by_default_and_name_the_line_when_on():
    deep = _jsonl(GOOD, {**GOOD, "x": [[[[1]]]]})
    nul = _jsonl(GOOD, '{"prompt": "a\x00b", "answer": "1"}')
    assert validate_jsonl_bytes(deep).rows == 2  # the trainer's own reads: no depth limit
    with pytest.raises(DatasetError, match="line 2: is not valid JSON"):  # a raw NUL is never JSON...
        validate_jsonl_bytes(nul)
    with pytest.raises(DatasetError, match=r"^line 2: is nested deeper than 4 levels$") as info:
        validate_jsonl_bytes(deep, max_depth=4)
    assert info.value.line == 2 and info.value.field is None
    assert validate_jsonl_bytes(deep, max_depth=5).rows == 2
    with pytest.raises(DatasetError, match=r"^line 2: contains NUL bytes"):  # ...but says so for uploads
        validate_jsonl_bytes(nul, reject_nul=True)
    with pytest.raises(DatasetError, match=r"^line 2: is 49 bytes; the limit is 30$"):
        validate_jsonl_bytes(_jsonl({"prompt": "1", "answer": "2"}, {**GOOD, "id": "abcdef"}), max_line_bytes=30)
    with pytest.raises(TooManyRows, match="line 3: more than 2 rows") as info:
        validate_jsonl_bytes(_jsonl(GOOD, {**GOOD, "id": 2}, {**GOOD, "id": 3}), max_rows=2)
    assert info.value.reason == "more than 2 rows; the limit is 2"


def test_an_unhashable_role_is_a_dataset_error():
    with pytest.raises(DatasetError, match="prompt\\[0\\].role"):
        parse_jsonl_bytes(_jsonl({"prompt": [{"role": ["user"], "content": "hi"}], "answer": "1"}))


def test_load_jsonl_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_jsonl(tmp_path / "nope.jsonl")


def _rows(n):
    return [Row(id=f"r{i}", prompt=f"{i}+0=", answer=str(i)) for i in range(n)]


def test_split_is_deterministic_order_free_and_sized():
    rows = _rows(100)
    train, held = split(rows, eval_size=20, seed=1)
    assert len(held) == 20 and len(train) == 80
    assert {r.id for r in train} | {r.id for r in held} == {r.id for r in rows}
    assert [r.id for r in held] == sorted((r.id for r in held), key=lambda s: int(s[1:]))  # file order
    again_train, again_held = split(rows[::-1], eval_size=20, seed=1)
    assert {r.id for r in again_held} == {r.id for r in held}
    assert {r.id for r in split(rows, eval_size=20, seed=2)[1]} != {r.id for r in held}
    assert len(split(rows, 0.25, seed=1)[1]) == 25
    with pytest.raises(ValueError, match="exactly one"):
        split(rows, 0.1, eval_size=3)
    with pytest.raises(ValueError, match="eval_size"):
        split(rows, eval_size=100)


def test_render_prompt_text_chat_template_and_fallback(tiny_tokenizer):
    assert render_prompt(Row(id="a", prompt="1+1=", answer="2"), tiny_tokenizer) == "1+1="
    messages = ({"role": "user", "content": "1+1="},)
    rendered = render_prompt(Row(id="a", prompt=messages, answer="2"), tiny_tokenizer)
    assert rendered == "<|im_start|>user\n1+1=<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(messages, None) == "user: 1+1=\nassistant:"


def test_sampler_batches_are_distinct_and_epochs_cover_everything():
    sampler = PromptSampler(10, 4, seed=0)
    batches = [sampler.next_batch() for _ in range(10)]  # 40 draws = 4 full epochs
    for batch in batches:
        assert batch.shape == (4,) and len(set(batch.tolist())) == 4
    flat = np.concatenate(batches)
    for epoch in range(4):
        assert sorted(flat[epoch * 10:(epoch + 1) * 10].tolist()) == list(range(10))


def test_sampler_state_round_trips_exactly():
    a = PromptSampler(7, 3, seed=5)
    for _ in range(4):
        a.next_batch()
    state = json.loads(json.dumps(a.state_dict()))
    b = PromptSampler(7, 3, seed=5)
    b.load_state_dict(state)
    assert all(np.array_equal(a.next_batch(), b.next_batch()) for _ in range(10))
    with pytest.raises(ValueError, match="batch_size"):
        PromptSampler(7, 2, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        PromptSampler(3, 4)
