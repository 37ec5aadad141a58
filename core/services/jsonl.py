"""Validation of uploaded JSONL datasets, with the line at fault in every error.

Rows are `{"prompt": str | [{"role": str, "content": str}, ...], "answer": str | number, ...}`
(DESIGN.md section 4). Blank lines are skipped and not counted. Limits (line length, nesting depth,
row count) come from Settings, so a hostile file is refused before it can cost memory or recursion.
The trainer's own validator (`trainer.data.validate_jsonl_bytes`) then checks the file as well, so
the API never accepts a file the training loop would refuse; ours runs first because it also
enforces the byte-level limits (line length, depth, NUL bytes) that protect the server.
"""

from __future__ import annotations

import json
from typing import Any

from core.services.errors import Invalid, TooLarge


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (scalars 0), iteratively so no recursion limit applies."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def _check_row(row: Any) -> str | None:
    """What is wrong with one parsed row, or None."""
    if not isinstance(row, dict):
        return f"must be a JSON object, got {type(row).__name__}"
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            return "field 'prompt' is empty"
    elif isinstance(prompt, list) and prompt:
        for i, message in enumerate(prompt):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), str)):
                return f"field 'prompt' message {i} must be {{'role': str, 'content': str}}"
    else:
        return "field 'prompt' must be a non-empty string or a list of chat messages"
    answer = row.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        return "field 'answer' must be a string or a number"
    return None


def iter_lines(data: bytes):
    """(line number from 1, raw line) for every non-blank line."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, raw


def validate_jsonl(data: bytes, *, max_rows: int, max_line_bytes: int, max_depth: int) -> int:
    """Number of rows in `data`; raises Invalid/TooLarge with `param="file:line N"` on the first bad line."""
    rows = 0
    for number, raw in iter_lines(data):
        param = f"file:line {number}"
        if len(raw) > max_line_bytes:
            raise Invalid(f"line {number} is {len(raw)} bytes; the limit is {max_line_bytes}", param)
        if b"\x00" in raw:
            raise Invalid(f"line {number} contains NUL bytes; is this a binary file?", param)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid(f"line {number} is not valid UTF-8 (byte {exc.start})", param) from None
        try:
            row = json.loads(text)
        except RecursionError:
            raise Invalid(f"line {number} is nested deeper than {max_depth} levels", param) from None
        except json.JSONDecodeError as exc:
            raise Invalid(f"line {number} is not valid JSON: {exc.msg} at column {exc.colno}", param) from None
        if _depth(row) > max_depth:
            raise Invalid(f"line {number} is nested deeper than {max_depth} levels", param)
        problem = _check_row(row)
        if problem:
            raise Invalid(f"line {number}: {problem}", param)
        rows += 1
        if rows > max_rows:
            raise TooLarge(f"more than {max_rows} rows; the limit is {max_rows}", "file")
    if rows == 0:
        raise Invalid("the file has no rows", "file")
    _trainer_check(data, max_rows)
    return rows


def _trainer_check(data: bytes, max_rows: int) -> None:
    """Run the training loop's validator too (the reader that will consume the file); 422 on error."""
    from trainer.data import validate_jsonl_bytes

    try:
        validate_jsonl_bytes(data, max_rows=max_rows)
    except (ValueError, TypeError) as exc:  # trainer.data.DatasetError, with .line
        message = str(exc)
        line = getattr(exc, "line", None)
        raise Invalid(message, f"file:line {line}" if line else "file") from None
