"""Write client/models.py from the API's OpenAPI schema: `python scripts/gen_client_models.py`.

The client's response models are generated, not copied, so they cannot drift from the API
unnoticed: tests/client/test_client_contract.py regenerates the text from `create_app().openapi()`
and fails when it differs from the checked-in file (run this script and commit the result).

Choices:
- Only the subset of JSON Schema that pydantic emits for our schemas is understood (types, `const`,
  `enum`, `anyOf`, arrays, objects, `$ref`); anything else raises, so a new construct is noticed
  here rather than mistranslated.
- Every `ListPublic_X_` schema (the API's one list shape) becomes the generic `Page[X]`; a list
  schema of another shape raises.
- Request-only schemas (`Body_*`, the multipart upload form) are left out; validation limits
  (`maxLength`, `minimum`) are the server's job and are left out too.
- Classes come in dependency order, then by name, so the output is stable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "client" / "models.py"
LIST_PREFIX = "ListPublic_"
PAGE_FIELDS = {"object", "data", "has_more", "next_cursor"}

HEADER = '''"""Response and request models of the BASIS REST API, GENERATED from its OpenAPI schema.

Do not edit: run `python scripts/gen_client_models.py` after changing api/schemas.py (or a route's
response model); tests/client/test_client_contract.py fails until this file matches the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list endpoint; follow `next_cursor` while `has_more`."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    next_cursor: str | None = None
'''


def _literal(value: Any) -> str:
    """Python source for a JSON value (double-quoted strings, like the rest of the code)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def page_item(schema: dict[str, Any]) -> dict[str, Any]:
    """The item schema of a `ListPublic_X_` schema; raises if it is not the one list shape."""
    props = schema.get("properties", {})
    if set(props) != PAGE_FIELDS or props["data"].get("type") != "array":
        raise ValueError(f"list schema {schema.get('title')!r} is not the API's list shape")
    return props["data"]["items"]


def type_of(schema: dict[str, Any]) -> str:
    """The Python annotation for a JSON Schema fragment."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        if name.startswith(LIST_PREFIX):
            raise ValueError(f"a field refers to the list schema {name}")
        return name
    if "anyOf" in schema:
        return " | ".join(dict.fromkeys(type_of(part) for part in schema["anyOf"]))
    if "const" in schema:
        return f"Literal[{_literal(schema['const'])}]"
    if "enum" in schema:
        return f"Literal[{', '.join(_literal(v) for v in schema['enum'])}]"
    kind = schema.get("type")
    if kind == "string":
        return "datetime" if schema.get("format") == "date-time" else "str"
    if kind in ("integer", "number", "boolean", "null"):
        return {"integer": "int", "number": "float", "boolean": "bool", "null": "None"}[kind]
    if kind == "array":
        return f"list[{type_of(schema.get('items', {}))}]"
    if kind == "object":
        extra = schema.get("additionalProperties", True)
        if "properties" in schema:
            raise ValueError(f"inline object with properties: {schema}")
        return "dict[str, Any]" if extra is True or extra == {} else f"dict[str, {type_of(extra)}]"
    if not schema or kind is None and set(schema) <= {"title", "description"}:
        return "Any"
    raise ValueError(f"unsupported JSON Schema fragment: {schema}")


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {_ref_name(schema["$ref"])} if "$ref" in schema else set()
        for value in schema.values():
            found |= _refs(value)
        return found
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema)) if schema else set()
    return set()


def _field(name: str, schema: dict[str, Any], required: bool) -> list[str]:
    annotation = type_of(schema)
    lines = [f"    # {schema['description']}"] if schema.get("description") else []
    if required:
        lines.append(f"    {name}: {annotation}")
    elif "default" in schema:
        lines.append(f"    {name}: {annotation} = {_literal(schema['default'])}")
    elif annotation.startswith(("dict[", "list[")):
        factory = annotation.split("[", 1)[0]
        lines.append(f"    {name}: {annotation} = Field(default_factory={factory})")
    else:
        optional = annotation if "None" in annotation.split(" | ") else f"{annotation} | None"
        lines.append(f"    {name}: {optional} = None")
    return lines


def _class(name: str, schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return f"{name} = {type_of(schema)}\n"
    if schema.get("type") != "object" or "properties" not in schema:
        raise ValueError(f"schema {name} is neither an object nor an enum")
    lines = [f"class {name}(BaseModel):"]
    description = (schema.get("description") or "").strip()
    if description:
        lines += [f'    """{description.splitlines()[0]}"""', ""]
    required = set(schema.get("required", []))
    for field_name, field_schema in schema["properties"].items():
        lines += _field(field_name, field_schema, field_name in required)
    return "\n".join(lines) + "\n"


def generate(openapi: dict[str, Any]) -> str:
    """The text of client/models.py for this OpenAPI document."""
    schemas = openapi["components"]["schemas"]
    for name, schema in schemas.items():
        if name.startswith(LIST_PREFIX):
            page_item(schema)  # the shape check; the generic Page covers every one
    wanted = {n: s for n, s in schemas.items()
              if not n.startswith(LIST_PREFIX) and not n.startswith("Body_")}
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in ordered:
            return
        if name in path:
            raise ValueError(f"recursive schema {' -> '.join(path + (name,))}")
        for dep in sorted(_refs(wanted[name]) & set(wanted)):
            visit(dep, path + (name,))
        ordered.append(name)

    for name in sorted(wanted):
        visit(name)
    blocks = [HEADER] + [_class(name, wanted[name]) for name in ordered]
    return "\n\n".join(block.rstrip("\n") + "\n" for block in blocks)


def api_openapi() -> dict[str, Any]:
    """The API's schema, from an app built on a throwaway SQLite file (nothing is connected)."""
    import tempfile

    from api.main import create_app
    from core.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=f"sqlite:///{tmp}/schema.sqlite")
        app = create_app(settings, enqueue=lambda *args, **kwargs: None)
        schema = app.openapi()
        app.state.engine.dispose()
    return schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if client/models.py is stale")
    parser.add_argument("--openapi", type=Path, help="read this openapi.json instead of the app's")
    args = parser.parse_args(argv)
    openapi = json.loads(args.openapi.read_text()) if args.openapi else api_openapi()
    text = generate(openapi)
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run python scripts/gen_client_models.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
