"""Validation of uploaded JSONL datasets, with the line at fault in every error.

There is one validator, the trainer's (`trainer.data.validate_jsonl_bytes`, torch-free): the API
calls it once with the server's limits from Settings (line length, nesting depth, NUL bytes, row
count), so a hostile file is refused before it can cost memory or recursion, and an accepted file
is exactly one the training loop will read. Its `DatasetError` becomes a 422 `Invalid` whose
param is `file:line N` (or `file`), and too many rows a 413 `TooLarge`. Blank lines are skipped
and not counted as rows, but line numbers count them, as an editor does.
"""

from __future__ import annotations

from collections.abc import Iterator

from core.services.errors import Invalid, TooLarge
from trainer.data import DatasetError, TooManyRows, validate_jsonl_bytes


def iter_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, raw line) for every non-blank line."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, raw


def validate_jsonl(data: bytes, *, max_rows: int, max_line_bytes: int, max_depth: int) -> int:
    """Number of rows in `data`; raises Invalid/TooLarge with `param="file:line N"` on the first bad line."""
    try:
        report = validate_jsonl_bytes(data, max_rows=max_rows, max_line_bytes=max_line_bytes,
                                      max_depth=max_depth, reject_nul=True)
    except TooManyRows as exc:
        raise TooLarge(exc.reason, "file") from None
    except DatasetError as exc:
        raise Invalid(str(exc), f"file:line {exc.line}" if exc.line is not None else "file") from None
    return report.rows
