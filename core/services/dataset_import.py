"""Dataset import: rows of a Hugging Face dataset (hub id, or a parquet/JSON/JSONL/CSV file sent
with the request) mapped onto `{"id"?, "prompt", "answer", ...}` and stored as an ordinary dataset.

Choices:
- Reading goes through the `datasets` library in streaming mode, so a parquet file is read batch by
  batch and a hub dataset is fetched as it is iterated: the row and byte limits stop the read as
  soon as they are passed instead of after the whole file is in memory. An uploaded file is first
  copied to a private temporary directory (refused past `max_upload_bytes` while it arrives); the
  library's cache lives in that directory too and goes with it.
- Limits come before the costly step they guard. A parquet file is judged by its footer first
  (fields, row count, the decoded size of each row group's mapped columns) and only the mapped
  columns are decoded. JSON is scanned for nesting depth before pyarrow parses it: pyarrow's JSON
  reader crashes the whole process (SIGSEGV) on a file nested 100,000 levels deep. So a hub
  dataset stored as JSON is downloaded first (its size checked before a byte is fetched) and read
  locally; parquet and CSV stream from the hub. Other hub formats (text, images) are refused.
- A user never names a path on the server: a local source is only ever the uploaded file, and a
  hub id must look like `org/name` and must not exist as a path relative to the server's working
  directory (the library would read such a directory instead of asking the hub). No `data_files`,
  no loading scripts.
- The mapping is explicit: a prompt field or a template with `{field}` placeholders (plain names
  only: no attribute access, indexing, conversions or format specs, so a template cannot reach
  into Python objects), an optional system prompt (the prompt becomes chat messages), an answer
  field with an extraction preset, an optional id field and fields kept as they are. Every field
  named is checked against the dataset's columns before any row is converted.
- Every converted row is checked by the upload validator (`trainer.data.parse_row`, with the
  server's limits on line bytes and nesting depth) plus duplicate ids and the row count, so an
  imported dataset is exactly one the upload path would accept; errors name the row (counted from
  1, as an editor counts lines) and the source field.
- Rows are written with `json.dumps`' defaults, as `basis up --demo` writes its dataset, so the
  same rows imported from another format give the same bytes (and sha256).
- Nothing is stored until every row passed: the JSONL is built in memory (bounded by
  `max_upload_bytes`) and handed to `datasets.store_jsonl`, the upload's own atomic store.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import string
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from core.models import Dataset, User
from core.services.datasets import CHUNK, clean_filename, store_jsonl
from core.services.errors import Invalid, TooLarge, UnsupportedMediaType, Upstream
from core.services.storage import require_free_space
from core.settings import Settings
from trainer.data import DatasetError, parse_row

PRESETS = ("plain", "gsm8k", "boxed")
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "json",
           ".ndjson": "json", ".csv": "csv"}
# `org/name` as the hub spells repository ids; no leading dot, so no `..` or hidden names.
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=-]{0,99}")  # a config, split or revision
RESERVED = ("id", "prompt", "answer")


@dataclass(frozen=True)
class FieldMapping:
    """How one source row becomes a dataset row; `validate()` checks it against nothing but itself."""

    answer_field: str
    prompt_field: str | None = None
    prompt_template: str | None = None
    system_prompt: str | None = None
    answer_preset: str = "plain"
    id_field: str | None = None
    keep_fields: tuple[str, ...] = ()

    def template_fields(self) -> list[str]:
        """The placeholders of `prompt_template`, in order; Invalid for anything but plain names."""
        if self.prompt_template is None:
            return []
        try:
            parts = list(string.Formatter().parse(self.prompt_template))
        except ValueError as exc:
            raise Invalid(f"prompt_template is not a valid template ({exc}); write a literal brace "
                          "as {{ or }}", "prompt_template") from None
        names = []
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            # A name of digits would be a positional index to str.format: refused with the rest.
            if not name or spec or conversion or name.isdigit() or any(ch in name for ch in ".[]"):
                shown = "{" + name + (f"!{conversion}" if conversion else "") + \
                    (f":{spec}" if spec else "") + "}"
                raise Invalid(f"prompt_template placeholder {shown} is not a plain field name: write "
                              "{field}, and a literal brace as {{ or }}", "prompt_template")
            names.append(name)
        if not names:
            raise Invalid("prompt_template has no {field} placeholder", "prompt_template")
        return names

    def validate(self) -> None:
        if (self.prompt_field is None) == (self.prompt_template is None):
            raise Invalid("give exactly one of prompt_field and prompt_template", "prompt_field")
        if self.answer_preset not in PRESETS:
            raise Invalid(f"answer_preset must be one of {', '.join(PRESETS)}; got "
                          f"{self.answer_preset!r}", "answer_preset")
        if self.system_prompt is not None and not self.system_prompt.strip():
            raise Invalid("system_prompt is empty; leave it out instead", "system_prompt")
        for field in self.keep_fields:
            if field in RESERVED:
                raise Invalid(f"keep_fields cannot keep {field!r}: the row's {field} comes from the "
                              "mapping", "keep_fields")
        self.template_fields()

    def fields(self) -> dict[str, str]:
        """Every source field the mapping reads -> the request parameter that names it."""
        named: dict[str, str] = {}
        for field, param in [(self.prompt_field, "prompt_field"), (self.answer_field, "answer_field"),
                             (self.id_field, "id_field")]:
            if field is not None:
                named.setdefault(field, param)
        for field in self.template_fields():
            named.setdefault(field, "prompt_template")
        for field in self.keep_fields:
            named.setdefault(field, "keep_fields")
        return named


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub (or the hub at HF_ENDPOINT)."""

    hub_id: str
    config: str | None = None
    split: str = "train"
    revision: str | None = None

    def validate(self) -> None:
        if not HUB_ID.fullmatch(self.hub_id) or ".." in self.hub_id:
            raise Invalid(f"hub_id must be a hub repository id such as 'openai/gsm8k'; got "
                          f"{self.hub_id!r}", "hub_id")
        for param in ("config", "split", "revision"):
            value = getattr(self, param)
            if value is not None and not NAME.fullmatch(value):
                raise Invalid(f"{param} must be a plain name (letters, digits, _ . = -); got "
                              f"{value!r}", param)
        if os.path.lexists(self.hub_id):  # the library would read this directory, not the hub
            raise Invalid(f"hub_id {self.hub_id!r} is also a path on the server; refusing it",
                          "hub_id")

    @property
    def label(self) -> str:
        """What the dataset's `filename` records: where the rows came from."""
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.hub_id}{revision}:{self.config or 'default'}:{self.split}"


# -- answer extraction presets -------------------------------------------------------------------


class _NoAnswer(ValueError):
    pass


def _gsm8k(text: str) -> str:
    """GSM8K's final answer: what follows the last `####`, first line, commas removed."""
    marker = text.rfind("####")
    if marker < 0:
        raise _NoAnswer("has no '#### <answer>' final answer")
    lines = text[marker + 4:].strip().splitlines()
    answer = lines[0].strip().replace(",", "") if lines else ""
    if not answer:
        raise _NoAnswer("has nothing after its '####'")
    return answer


BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _boxed(text: str) -> str:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced."""
    starts = [m.end() for m in BOXED.finditer(text)]
    if not starts:
        raise _NoAnswer("has no \\boxed{...} answer")
    start = starts[-1]
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                answer = text[start:index].strip()
                if not answer:
                    raise _NoAnswer("has an empty \\boxed{}")
                return answer
    raise _NoAnswer("has a \\boxed{ whose braces are not closed")


def _plain(text: str) -> str:
    answer = text.strip()
    if not answer:
        raise _NoAnswer("is empty")
    return answer


EXTRACTORS = {"plain": _plain, "gsm8k": _gsm8k, "boxed": _boxed}


def extract_answer(text: str, preset: str) -> str:
    """The answer `preset` finds in `text`; ValueError saying what is missing."""
    return EXTRACTORS[preset](text)


# -- rows ----------------------------------------------------------------------------------------


class RowError(Invalid):
    """A source row that cannot be converted; the message and param name the row and field."""

    def __init__(self, number: int, reason: str, field: str | None = None):
        where = f"row {number}" + (f", field {field!r}" if field is not None else "")
        super().__init__(f"{where}: {reason}",
                         f"row {number}" + (f", field {field}" if field is not None else ""))


def _scalar_text(value: Any, number: int, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        # pyarrow reads an integer too long for 64 bits in JSON as inf: never an answer "inf".
        raise RowError(number, f"is {value}, not a finite number (an integer too long for 64 "
                       "bits reads as inf: quote it in the file)", field)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    kind = "null" if value is None else f"a {type(value).__name__}"
    raise RowError(number, f"must be text or a number, got {kind}", field)


def _prompt(row: Mapping[str, Any], number: int, mapping: FieldMapping) -> Any:
    if mapping.prompt_template is not None:
        values = {name: _scalar_text(row[name], number, name) for name in mapping.template_fields()}
        prompt: Any = mapping.prompt_template.format_map(values)
    else:
        field = mapping.prompt_field
        assert field is not None
        prompt = row[field]
        if isinstance(prompt, int | float) and not isinstance(prompt, bool):
            prompt = _scalar_text(prompt, number, field)
        elif not isinstance(prompt, str | list):
            kind = "null" if prompt is None else f"a {type(prompt).__name__}"
            raise RowError(number, f"must be text or a list of chat messages, got {kind}", field)
    if mapping.system_prompt is None:
        return prompt
    system = {"role": "system", "content": mapping.system_prompt}
    if isinstance(prompt, str):
        return [system, {"role": "user", "content": prompt}]
    if any(isinstance(m, dict) and m.get("role") == "system" for m in prompt):
        raise RowError(number, "already has a system message; leave out system_prompt",
                       mapping.prompt_field)
    return [system, *prompt]


def _answer(row: Mapping[str, Any], number: int, mapping: FieldMapping) -> str:
    field = mapping.answer_field
    text = _scalar_text(row[field], number, field)
    try:
        return extract_answer(text, mapping.answer_preset)
    except _NoAnswer as exc:
        raise RowError(number, f"{exc} (answer_preset {mapping.answer_preset})", field) from None


def _not_json(value: Any) -> Any:
    raise TypeError(f"a {type(value).__name__} is not JSON")


def convert_row(row: Mapping[str, Any], number: int, mapping: FieldMapping) -> dict[str, Any]:
    """The dataset row for source row `number` (keys: id?, prompt, answer, kept fields)."""
    out: dict[str, Any] = {}
    if mapping.id_field is not None:
        value = row[mapping.id_field]
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            kind = "null" if value is None else f"a {type(value).__name__}"
            raise RowError(number, f"an id must be text or an integer, got {kind}", mapping.id_field)
        out["id"] = value
    out["prompt"] = _prompt(row, number, mapping)
    out["answer"] = _answer(row, number, mapping)
    for field in mapping.keep_fields:
        try:
            json.dumps(row[field], allow_nan=False, default=_not_json)
        except (TypeError, ValueError) as exc:
            raise RowError(number, f"cannot be kept: {exc}", field) from None
        out[field] = row[field]
    return out


def _source_field(mapping: FieldMapping, output_field: str | None) -> str | None:
    """The source field behind an output field a validator named (`prompt[0].role` -> prompt's)."""
    if output_field is None:
        return None
    head = output_field.split("[")[0].split(".")[0]
    source = {"prompt": mapping.prompt_field or "prompt_template", "answer": mapping.answer_field,
              "id": mapping.id_field}.get(head)
    return source or output_field


def to_jsonl(rows: Iterator[Mapping[str, Any]], mapping: FieldMapping, settings: Settings,
             *, max_rows: int | None = None) -> tuple[bytes, int]:
    """(JSONL, row count) of the converted rows, each validated as an upload line is; raises
    RowError / TooLarge naming the row. Stops reading at `max_rows`."""
    limit_bytes, limit_rows = settings.max_upload_bytes, settings.max_dataset_rows
    lines: list[bytes] = []
    seen: dict[str, int] = {}
    size = 0
    for number, row in enumerate(rows if max_rows is None else islice(rows, max_rows), start=1):
        if number > limit_rows:
            raise TooLarge(f"the dataset has more than {limit_rows} rows, the server's limit; "
                           "import fewer with max_rows", f"row {number}")
        try:
            line = json.dumps(convert_row(row, number, mapping), allow_nan=False).encode()
        except ValueError as exc:  # NaN or Infinity in the prompt's or answer's numbers
            raise RowError(number, f"cannot be stored as JSON: {exc}") from None
        size += len(line) + 1
        if size > limit_bytes:
            raise TooLarge(f"the imported dataset passes the limit of {limit_bytes} bytes at row "
                           f"{number}; import fewer rows with max_rows", f"row {number}")
        try:
            parsed = parse_row(line, number, max_line_bytes=settings.max_line_bytes,
                               max_depth=settings.max_json_depth, reject_nul=True)
        except DatasetError as exc:
            raise RowError(number, exc.reason, _source_field(mapping, exc.field)) from None
        if parsed.id in seen:
            raise RowError(number, f"duplicate id {parsed.id!r} (first in row {seen[parsed.id]})",
                           mapping.id_field)
        seen[parsed.id] = number
        lines.append(line)
    if not lines:
        raise Invalid("the dataset has no rows", "file")
    return b"\n".join(lines) + b"\n", len(lines)


# -- sources -------------------------------------------------------------------------------------


def file_format(filename: str | None, given: str | None) -> str:
    """The `datasets` builder for an uploaded file: `given`, else from its extension."""
    if given is not None:
        if given not in set(FORMATS.values()):
            raise Invalid(f"format must be one of parquet, json, csv; got {given!r}", "format")
        return given
    suffix = Path(filename or "").suffix.lower()
    if suffix not in FORMATS:
        raise UnsupportedMediaType(
            f"cannot tell the format of {clean_filename(filename)!r}: send a .parquet, .json, .jsonl "
            "or .csv file (or set format)", "file")
    return FORMATS[suffix]


def _save_upload(source: BinaryIO, path: Path, limit: int) -> None:
    """Copy the upload to `path`, refusing (413) as soon as it passes `limit` bytes."""
    total = 0
    with open(path, "wb") as out:
        while chunk := source.read(CHUNK):
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"the file is larger than the limit of {limit} bytes", "file")
            out.write(chunk)


def _check_names(columns: list[str], mapping: FieldMapping) -> None:
    """Invalid naming the request parameter of the first field the dataset lacks."""
    for field, param in mapping.fields().items():
        if field not in columns:
            raise Invalid(f"unknown field {field!r}: the dataset's fields are "
                          f"{', '.join(map(repr, columns))}", param)


def _rows(dataset: Any, mapping: FieldMapping, where: str) -> Iterator[Mapping[str, Any]]:
    """The dataset's rows, the mapping's fields checked first (on the schema when the library
    knows it, else on the first row); a read error is Invalid naming `where`."""
    if dataset.features is not None:
        _check_names(list(dataset.features), mapping)
    iterator = iter(dataset)
    first = True
    while True:
        try:
            row = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # the library and pyarrow raise many kinds for a bad file
            raise Invalid(f"cannot read the dataset: {_short(exc)}", where) from None
        if first:
            _check_names(list(row), mapping)
            first = False
        yield row


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: no per-character alternation


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON or JSON Lines text, brackets inside strings ignored.
    Linear time and no recursion (strings removed by one regex, brackets counted with numpy)."""
    import numpy as np

    stripped = np.frombuffer(JSON_STRING.sub(b'""', data), dtype=np.uint8)
    deepest, level = 0, 0
    for start in range(0, len(stripped), CHUNK):
        chunk = stripped[start:start + CHUNK]
        steps = (np.isin(chunk, (ord("["), ord("{"))).astype(np.int32)
                 - np.isin(chunk, (ord("]"), ord("}"))).astype(np.int32))
        levels = np.cumsum(steps) + level
        if len(levels):
            deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _check_json(path: Path, settings: Settings) -> None:
    """Refuse JSON nested past the row limit before pyarrow parses it: pyarrow's JSON reader
    recurses in C and crashes the process (SIGSEGV) on a file nested 100,000 levels deep."""
    depth = json_depth(path.read_bytes())
    limit = settings.max_json_depth + 1  # + 1: the array around the rows of a .json file
    if depth > limit:
        raise Invalid(f"the file nests JSON {depth} levels deep; the limit is {limit}", "file")


def _check_parquet(path: Path, mapping: FieldMapping, settings: Settings,
                   max_rows: int | None) -> list[str]:
    """Check a parquet file from its footer alone (fields, rows, row-group sizes), before any
    row is read; returns the columns to read (only those the mapping names)."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise Invalid(f"cannot read the file as parquet: {_short(exc)}", "file") from None
    _check_names(list(parquet.schema_arrow.names), mapping)
    meta, needed = parquet.metadata, set(mapping.fields())
    rows_read = meta.num_rows if max_rows is None else min(max_rows, meta.num_rows)
    if rows_read > settings.max_dataset_rows:
        raise TooLarge(f"the file has {meta.num_rows} rows; the limit is "
                       f"{settings.max_dataset_rows} (import fewer with max_rows)", "file")
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        size = sum(group.column(j).total_uncompressed_size for j in range(group.num_columns)
                   if group.column(j).path_in_schema.split(".")[0] in needed)
        if size > settings.max_upload_bytes:  # a row group is decoded whole
            raise TooLarge(f"row group {index} of the file holds {size} bytes of the mapped fields "
                           f"uncompressed; the limit is {settings.max_upload_bytes} (write the file "
                           "with smaller row groups)", "file")
    return sorted(needed)


def _open_files(paths: list[Path], builder: str, mapping: FieldMapping, settings: Settings,
                max_rows: int | None, cache: Path) -> Any:
    """Local files (the upload, or JSON fetched from the hub) as a streaming dataset, checked
    first where the reader would otherwise pay or crash."""
    import datasets

    options: dict[str, Any] = {}
    for path in paths:
        if builder == "json":
            _check_json(path, settings)
        elif builder == "parquet":
            options["columns"] = _check_parquet(path, mapping, settings, max_rows)
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in paths], split="train",
                                     streaming=True, cache_dir=str(cache), **options)
    except Exception as exc:  # a file that is not what its name says
        raise Invalid(f"cannot read the file as {builder}: {_short(exc)}", "file") from None


def _hub_builder(source: HubSource, cache: Path) -> Any:
    """The hub dataset's builder (its config resolved, nothing read yet); errors say which
    parameter to fix."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset_builder(source.hub_id, name=source.config,
                                             revision=source.revision, cache_dir=str(cache))
    except DatasetNotFoundError as exc:
        if source.revision and "revision" in str(exc).lower():
            raise Invalid(f"no revision {source.revision!r} of {source.hub_id!r} on the hub",
                          "revision") from None
        raise Invalid(f"no dataset {source.hub_id!r} on the hub (or it needs HF_TOKEN): "
                      f"{_short(exc)}", "hub_id") from None
    except (ConnectionError, TimeoutError) as exc:
        raise Upstream(f"cannot reach the hub: {_short(exc)}", "hub_id") from None
    except ValueError as exc:
        param = "config" if "config" in str(exc).lower() else "hub_id"
        raise Invalid(f"cannot load {source.label}: {_short(exc)}", param) from None
    except OSError as exc:  # network failures the HTTP stack reports as OSError subclasses
        raise Upstream(f"cannot load {source.label} from the hub: {_short(exc)}", "hub_id") from None


def _fetch(urls: list[str], work: Path, limit: int) -> list[Path]:
    """Download hub files (hf:// URLs) into `work`, their total size checked before any byte."""
    from huggingface_hub import HfFileSystem

    hub = HfFileSystem()
    try:
        size = sum(int(hub.info(url)["size"]) for url in urls)
        if size > limit:
            raise TooLarge(f"the split's files take {size} bytes; the limit is {limit}", "hub_id")
        paths = [work / f"hub-{index}.json" for index in range(len(urls))]
        for url, path in zip(urls, paths, strict=True):
            hub.get_file(url, str(path))
    except (OSError, ValueError) as exc:
        raise Upstream(f"cannot fetch the dataset's files from the hub: {_short(exc)}",
                       "hub_id") from None
    return paths


def _open_hub(source: HubSource, mapping: FieldMapping, settings: Settings, max_rows: int | None,
              work: Path) -> Any:
    """The hub dataset's split as a streaming dataset. Parquet and CSV stream from the hub; JSON
    is fetched first (size checked) so its nesting is checked before pyarrow parses it."""
    builder = _hub_builder(source, work / "cache")
    kind = builder.name
    if kind not in ("parquet", "json", "csv"):
        raise Invalid(f"{source.label} is stored as {kind!r}; import reads parquet, JSON and CSV "
                      "data", "hub_id")
    splits = {str(name): list(urls) for name, urls in (builder.config.data_files or {}).items()}
    if source.split not in splits:
        raise Invalid(f"no split {source.split!r} in {source.label}; its splits are "
                      f"{', '.join(map(repr, splits))}", "split")
    if kind == "json":
        paths = _fetch(splits[source.split], work, settings.max_upload_bytes)
        return _open_files(paths, "json", mapping, settings, max_rows, work / "cache")
    try:
        return builder.as_streaming_dataset(split=source.split)
    except Exception as exc:
        raise Upstream(f"cannot read {source.label}: {_short(exc)}", "hub_id") from None


def import_dataset(session: Session, settings: Settings, owner: User, *, mapping: FieldMapping,
                   file: BinaryIO | None = None, filename: str | None = None,
                   file_format_name: str | None = None, hub: HubSource | None = None,
                   max_rows: int | None = None, name: str | None = None) -> Dataset:
    """Import rows from the uploaded `file` or the `hub` dataset through `mapping`; commits.
    Nothing is stored unless every row passed."""
    if (file is None) == (hub is None):
        raise Invalid("send either a file or a hub_id", "file" if file is None else "hub_id")
    if name is not None and not (0 < len(name.strip()) <= 200):
        raise Invalid("name must be 1-200 characters", "name")
    if max_rows is not None and max_rows < 1:
        raise Invalid("max_rows must be at least 1", "max_rows")
    mapping.validate()
    builder = None
    if hub is not None:
        hub.validate()
    else:
        builder = file_format(filename, file_format_name)
    require_free_space(settings, "import")
    work = Path(tempfile.mkdtemp(prefix="basis-import-"))
    try:
        if file is not None and builder is not None:
            path = work / f"source{Path(clean_filename(filename)).suffix.lower() or '.' + builder}"
            _save_upload(file, path, settings.max_upload_bytes)
            dataset = _open_files([path], builder, mapping, settings, max_rows, work / "cache")
            label, where = clean_filename(filename), "file"
        else:
            assert hub is not None
            dataset = _open_hub(hub, mapping, settings, max_rows, work)
            label, where = hub.label, "hub_id"
        data, rows = to_jsonl(_rows(dataset, mapping, where), mapping, settings, max_rows=max_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return store_jsonl(session, settings, owner, data=data, rows=rows, filename=label[:255],
                       name=name or label[:200])
