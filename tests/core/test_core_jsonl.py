"""The upload check is the trainer's validator, run once, with the server's limits mapped to API errors."""

from __future__ import annotations

import json

import pytest

import trainer.data
from core.services.errors import Invalid, TooLarge
from core.services.jsonl import validate_jsonl

LIMITS = {"max_rows": 3, "max_line_bytes": 200, "max_depth": 5}
GOOD = b'{"prompt": "p", "answer": "a"}\n'


def test_every_line_is_parsed_once_by_the_trainer(monkeypatch):
    calls = []
    real = trainer.data.parse_row

    def counting(raw, line, **limits):
        calls.append((line, limits))
        return real(raw, line, **limits)

    monkeypatch.setattr(trainer.data, "parse_row", counting)
    data = b'{"prompt": "p", "answer": "a", "id": "x"}\n\n{"prompt": "q", "answer": 2}\n'
    assert validate_jsonl(data, **LIMITS) == 2
    assert calls == [(n, {"max_line_bytes": 200, "max_depth": 5, "reject_nul": True}) for n in (1, 3)]


@pytest.mark.parametrize("data, error, param, message", [
    (b"x" * 201 + b"\n", Invalid, "file:line 1", "line 1: is 201 bytes; the limit is 200"),
    (GOOD + b'{"prompt": "a\x00b", "answer": "1"}\n', Invalid, "file:line 2",
     "line 2: contains NUL bytes; is this a binary file?"),
    (b'{"prompt": "p", "answer": "a", "x": [[[[[1]]]]]}\n', Invalid, "file:line 1",
     "line 1: is nested deeper than 5 levels"),
    (b'{"prompt": "p", "answer": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", Invalid,
     "file:line 1", "line 1: is nested deeper than 5 levels"),  # past json's recursion limit
    (b'{"prompt": "\xe9", "answer": "1"}\n', Invalid, "file:line 1", "line 1: is not valid UTF-8 (byte 12)"),
    (GOOD * 4, TooLarge, "file", "more than 3 rows; the limit is 3"),
    (b"\n \n", Invalid, "file", "the file has no rows"),
    (GOOD + b'{"prompt": [{"role": ["user"], "content": "hi"}], "answer": "1"}\n', Invalid, "file:line 2",
     "line 2: field 'prompt[0].role': role must be one of"),  # unhashable role: a 422, not a TypeError
    (b'{"prompt": "p", "answer": "a", "id": "d"}\n' * 2, Invalid, "file:line 2",
     "line 2: field 'id': duplicate id 'd' (first on line 1)"),  # what the training loop would refuse
])
def test_errors_keep_the_apis_classes_params_and_messages(data, error, param, message):
    limits = {**LIMITS, "max_line_bytes": 200 if data.startswith(b"x") else 300_000}
    with pytest.raises(error) as caught:
        validate_jsonl(data, **limits)
    assert caught.value.param == param and caught.value.message.startswith(message), caught.value.message


def test_chat_prompts_and_numeric_answers_are_accepted():
    rows = [{"prompt": [{"role": "user", "content": "2+2?"}], "answer": 4, "id": "q1"},
            {"prompt": "3+3?", "answer": 6.5}]
    assert validate_jsonl("\n".join(json.dumps(r) for r in rows).encode(), **LIMITS) == 2
