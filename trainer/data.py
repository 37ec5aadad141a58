"""Prompt datasets: JSONL loading and validation, train/eval split, prompt rendering, batch sampling.

Rows are ``{"prompt": str | [{"role", "content"}, ...], "answer": str, "id"?: str, ...}``
(DESIGN.md section 4). Choices:
- Every error is a `DatasetError` (a ValueError) carrying `line` (1-based, as an editor counts) and
  `field`, and its message names both, so the API can point at the place in an upload.
- This is the only JSONL validator: the API's upload check (core/services/jsonl.py) calls
  `validate_jsonl_bytes` with its server limits (line bytes, nesting depth, NUL bytes, row count),
  so an accepted upload is exactly a file the training loop will read. Limits are checked before
  the costly step they guard: length and NUL bytes before decoding, depth right after parsing.
  Too many rows is a `TooManyRows` (the API answers 413 instead of 422).
- Blank lines are skipped but still counted, so line numbers match the file.
- A numeric answer (``"answer": 19``) is accepted and kept as its JSON text (``"19"``): rewards
  compare strings or parse numbers themselves, and the upload validator in core/ accepts numbers too.
  Booleans, null, objects and lists are refused.
- Missing ids become ``line-{n}``; given ids must be non-empty strings (or integers, kept as text)
  and unique, since BASIS's priors are keyed by id.
- Message roles are limited to system/user/assistant/tool: a typo such as "usr" would otherwise be
  rendered by a chat template as garbage without complaint.
- `split` decides membership by a seeded hash of each row's id, not by position, so a row stays on
  the same side when the file is reordered or rows are added; each side keeps file order.
- `PromptSampler` walks seeded per-epoch permutations; a batch spanning an epoch boundary still has
  distinct prompts and every epoch still visits every prompt exactly once. Its state (position and
  current order) round-trips exactly, which resume relies on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real prompt, far below a memory problem
MAX_ROWS = 1_000_000
MAX_ERRORS = 20


class DatasetError(ValueError):
    """A bad dataset; `line` is 1-based (None: the file as a whole), `field` the JSON key at fault."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None):
        where = f"line {line}: " if line is not None else ""
        what = f"field '{field}': " if field is not None else ""
        super().__init__(f"{where}{what}{message}")
        self.line = line
        self.field = field
        self.reason = message


class TooManyRows(DatasetError):
    """The file has more rows than `max_rows`; `line` is the first row past the limit."""


@dataclass(frozen=True)
class Row:
    """One validated row. `prompt` is text or a tuple of {"role", "content"} dicts."""

    id: str
    prompt: str | tuple[dict[str, str], ...]
    answer: str
    line: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompt, str)


@dataclass
class ValidationReport:
    """Result of `validate_jsonl_bytes(..., raise_on_error=False)`."""

    rows: int
    errors: list[DatasetError]

    @property
    def ok(self) -> bool:
        return not self.errors


def _check_prompt(prompt: Any, line: int) -> str | tuple[dict[str, str], ...]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DatasetError("is empty", line, "prompt")
        return prompt
    if not isinstance(prompt, list):
        kind = "missing" if prompt is None else f"a {type(prompt).__name__}"
        raise DatasetError(f"must be a string or a list of chat messages, got {kind}", line, "prompt")
    if not prompt:
        raise DatasetError("is an empty list of messages", line, "prompt")
    messages = []
    for i, message in enumerate(prompt):
        name = f"prompt[{i}]"
        if not isinstance(message, dict):
            raise DatasetError("must be an object {'role', 'content'}", line, name)
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise DatasetError(f"role must be one of {sorted(ROLES)}, got {role!r}", line,
                               f"{name}.role")
        if not isinstance(content, str):
            raise DatasetError("content must be a string", line, f"{name}.content")
        messages.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in messages):
        raise DatasetError("every message is empty", line, "prompt")
    return tuple(messages)


def _check_answer(answer: Any, line: int) -> str:
    if isinstance(answer, str):
        return answer
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        return json.dumps(answer)
    kind = "missing" if answer is None else f"a {type(answer).__name__}"
    raise DatasetError(f"must be a string (or a number), got {kind}", line, "answer")


def _check_id(value: Any, line: int) -> str:
    if value is None:
        return f"line-{line}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    raise DatasetError("must be a non-empty string or an integer", line, "id")


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


# Longest integer a row may hold. Python refuses to convert more than 4,300 digits (and conversion
# is quadratic below that), so a 5,000-digit number must be a clear error at upload, not a crash
# later; 100 digits still hold any real answer (69! has 99).
MAX_INT_DIGITS = 100


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _BadValue(f"has an integer of {digits} digits; the limit is {MAX_INT_DIGITS} "
                        "(quote it to keep it as text)")
    return int(text)


class _BadValue(ValueError):
    pass


def _check_strings(value: Any, line: int) -> None:
    """Refuse lone UTF-16 surrogates ("\\ud800"): valid JSON escapes that no UTF-8 text can hold,
    so the row could be stored but never read back. Iterative, like `_depth`."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise DatasetError(f"has a lone surrogate escape (\\u{ord(item[exc.start]):04x}) "
                                   "that is not text", line) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_row(raw: bytes | str, line: int, *, max_line_bytes: int | None = None,
              max_depth: int | None = None, reject_nul: bool = False) -> Row:
    """Validate one JSONL line into a Row; raises DatasetError naming the line and field.

    Limits (for untrusted uploads): `max_line_bytes` (default MAX_LINE_BYTES; bytes input only),
    `max_depth` of nested objects/lists (default none), `reject_nul` refuses raw NUL bytes (a
    binary file, not text)."""
    if isinstance(raw, bytes):
        limit = MAX_LINE_BYTES if max_line_bytes is None else max_line_bytes
        if len(raw) > limit:
            raise DatasetError(f"is {len(raw)} bytes; the limit is {limit}", line)
        if reject_nul and b"\x00" in raw:
            raise DatasetError("contains NUL bytes; is this a binary file?", line)
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"is not valid UTF-8 (byte {exc.start})", line) from None
    too_deep = "is nested too deeply" if max_depth is None else f"is nested deeper than {max_depth} levels"
    try:
        obj = json.loads(raw, parse_int=_bounded_int)
    except RecursionError:
        raise DatasetError(too_deep, line) from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"is not valid JSON: {exc.msg} at column {exc.colno}", line) from None
    except _BadValue as exc:
        raise DatasetError(str(exc), line) from None
    if max_depth is not None and _depth(obj) > max_depth:
        raise DatasetError(too_deep, line)
    _check_strings(obj, line)
    if not isinstance(obj, dict):
        raise DatasetError(f"must be a JSON object, got {type(obj).__name__}", line)
    prompt = _check_prompt(obj.get("prompt"), line)
    answer = _check_answer(obj.get("answer"), line)
    row_id = _check_id(obj.get("id"), line)
    extra = {k: v for k, v in obj.items() if k not in ("prompt", "answer", "id")}
    return Row(id=row_id, prompt=prompt, answer=answer, line=line, extra=extra)


def _iter_rows(data: bytes, max_rows: int, collect: list[DatasetError] | None, **limits: Any):
    """Yield Rows; errors raise, or are appended to `collect` (then the bad line is skipped).
    `limits` go to `parse_row`."""
    seen: dict[str, int] = {}
    count = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = parse_row(raw.rstrip(b"\r"), number, **limits)
            if row.id in seen:
                raise DatasetError(f"duplicate id {row.id!r} (first on line {seen[row.id]})",
                                   number, "id")
            seen[row.id] = number
            count += 1
            if count > max_rows:
                raise TooManyRows(f"more than {max_rows} rows; the limit is {max_rows}", number)
        except DatasetError as exc:
            if collect is None or count > max_rows:
                raise
            collect.append(exc)
            if len(collect) >= MAX_ERRORS:
                return
            continue
        yield row


def parse_jsonl_bytes(data: bytes, *, max_rows: int = MAX_ROWS) -> list[Row]:
    """Every row of a JSONL document; raises DatasetError on the first bad line or an empty file."""
    rows = list(_iter_rows(data, max_rows, None))
    if not rows:
        raise DatasetError("the file has no rows")
    return rows


def validate_jsonl_bytes(data: bytes, *, max_rows: int = MAX_ROWS, max_line_bytes: int | None = None,
                         max_depth: int | None = None, reject_nul: bool = False,
                         raise_on_error: bool = True) -> ValidationReport:
    """Check an uploaded JSONL document the way `load_jsonl` will read it, within the limits
    (see `parse_row`; more than `max_rows` rows is a `TooManyRows` and ends the check).

    raise_on_error=True (default): raise the first DatasetError (its `.line`/`.field` say where).
    False: return a report with the row count and up to MAX_ERRORS errors (bad lines not counted).
    """
    errors: list[DatasetError] | None = None if raise_on_error else []
    limits = {"max_line_bytes": max_line_bytes, "max_depth": max_depth, "reject_nul": reject_nul}
    try:
        rows = sum(1 for _ in _iter_rows(data, max_rows, errors, **limits))
    except DatasetError as exc:
        if raise_on_error:
            raise
        return ValidationReport(rows=0, errors=[*(errors or []), exc])
    if rows == 0 and not errors:
        empty = DatasetError("the file has no rows")
        if raise_on_error:
            raise empty
        errors = [empty]
    return ValidationReport(rows=rows, errors=errors or [])


def load_jsonl(path: str | os.PathLike, *, max_rows: int = MAX_ROWS) -> list[Row]:
    """Read and validate a JSONL dataset file; raises DatasetError (message starts with the line)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no such file: {path}")
    return parse_jsonl_bytes(path.read_bytes(), max_rows=max_rows)


def _unit_hash(seed: int, key: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split(rows: Sequence[Row], eval_fraction: float | None = None, *, eval_size: int | None = None,
          seed: int = 0) -> tuple[list[Row], list[Row]]:
    """(train, eval): the eval rows are the `eval_size` (or round(fraction * n)) rows of smallest
    seeded id hash. Deterministic, independent of row order; both lists keep file order.
    At least one row stays in train."""
    if (eval_fraction is None) == (eval_size is None):
        raise ValueError("give exactly one of eval_fraction and eval_size")
    n = len(rows)
    if eval_fraction is not None:
        if not 0.0 <= eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        eval_size = round(eval_fraction * n)
    assert eval_size is not None
    if eval_size < 0 or eval_size >= n:
        raise ValueError(f"eval_size must be in [0, {n - 1}] for {n} rows, got {eval_size}")
    ranked = sorted(range(n), key=lambda i: (_unit_hash(seed, rows[i].id), i))
    chosen = set(ranked[:eval_size])
    train = [r for i, r in enumerate(rows) if i not in chosen]
    held = [r for i, r in enumerate(rows) if i in chosen]
    return train, held


def render_messages_plain(messages: Sequence[Mapping[str, str]]) -> str:
    """Fallback for tokenizers without a chat template: 'role: content' lines, then 'assistant:'."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


def render_prompt(row: Row | str | Sequence[Mapping[str, str]], tokenizer: Any = None) -> str:
    """The text the policy is conditioned on.

    A text prompt is returned unchanged (the tokenizer adds its own BOS when it encodes). Chat
    messages go through the tokenizer's chat template with a generation prompt when it has one,
    else through `render_messages_plain`.
    """
    prompt = row.prompt if isinstance(row, Row) else row
    if isinstance(prompt, str):
        return prompt
    messages = [dict(m) for m in prompt]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return render_messages_plain(messages)


class PromptSampler:
    """Seeded epoch sampler over `n` prompts: `next_batch()` gives `batch_size` distinct indices.

    Epoch e visits a permutation of range(n) drawn from `default_rng([seed, e])`; a batch that
    crosses into the next epoch takes the first unused indices of the new permutation and the
    ones it skipped move just behind, so every epoch still covers each prompt once.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if n < 1:
            raise ValueError(f"need at least one prompt, got n={n}")
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}] (distinct prompts per batch), "
                             f"got {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def next_batch(self) -> np.ndarray:
        """(batch_size,) int64 prompt indices, all distinct."""
        take = self._order[self.position:self.position + self.batch_size]
        self.position += len(take)
        if len(take) == self.batch_size:
            return take.copy()
        self.epoch += 1
        fresh = self._permutation(self.epoch)
        need = self.batch_size - len(take)
        head = fresh[~np.isin(fresh, take)][:need]
        # The new epoch is `head` (served now) then the rest of its permutation, which still holds
        # the indices just served from the old epoch: they come later in this epoch, not now.
        rest = fresh[~np.isin(fresh, head)]
        self._order = np.concatenate([head, rest])
        self.position = need
        return np.concatenate([take, head])

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; `load_state_dict` restores it exactly."""
        return {"n": self.n, "batch_size": self.batch_size, "seed": self.seed, "epoch": self.epoch,
                "position": self.position, "order": self._order.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("n", "batch_size", "seed"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state has {key}={state[key]}, this sampler "
                                 f"{getattr(self, key)}")
        order = np.asarray(state["order"], dtype=np.int64)
        if sorted(order.tolist()) != list(range(self.n)):
            raise ValueError("sampler state 'order' is not a permutation of range(n)")
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), order
