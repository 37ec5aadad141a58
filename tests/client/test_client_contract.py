"""The client against the API's own OpenAPI schema: generated models up to date, every route
covered with the right response model. A change to api/schemas.py or a route fails here until
`python scripts/gen_client_models.py` is run (and the client's ROUTES table is updated)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from client import models
from client.rest import ROUTES
from scripts.gen_client_models import OUT, api_openapi, generate, page_item, type_of


@pytest.fixture(scope="module")
def openapi():
    return api_openapi()


def test_generated_models_match_the_api(openapi):
    assert OUT == Path(models.__file__).resolve()
    assert generate(openapi) == OUT.read_text(), (
        "client/models.py differs from the API's schema: run python scripts/gen_client_models.py")


def _schema_name(model) -> str:
    """The annotation the generator writes for `model` (a Page[X] is named by its item)."""
    if isinstance(model, type) and issubclass(model, models.Page) and model is not models.Page:
        (item,) = model.__pydantic_generic_metadata__["args"]
        name = item.__name__ if isinstance(item, type) and issubclass(item, BaseModel) else \
            str(item).replace("typing.", "")
        return f"Page[{name}]"
    return model.__name__


def _expected(openapi, operation) -> str | None:
    """The response the API documents for `operation`, as `_schema_name` spells it."""
    for status, response in operation["responses"].items():
        if not status.startswith("2"):
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if not schema or "$ref" not in schema:
            return None
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name.startswith("ListPublic_"):
            return f"Page[{type_of(page_item(openapi['components']['schemas'][name]))}]"
        return name
    return None


def test_every_route_is_in_the_client_with_its_response_model(openapi):
    api_routes = {(method.upper(), path): op for path, ops in openapi["paths"].items()
                  for method, op in ops.items()}
    assert set(ROUTES) == set(api_routes), "routes the client and the API disagree on"
    for key, model in ROUTES.items():
        expected = _expected(openapi, api_routes[key])
        got = None if model is None else _schema_name(model)
        assert got == expected, f"{key}: client reads {got}, the API returns {expected}"


def test_status_enum_is_core_status():
    from core.status import JobStatus

    assert typing.get_args(models.JobStatus) == tuple(JobStatus)


def test_generator_refuses_what_it_does_not_understand():
    with pytest.raises(ValueError, match="unsupported"):
        type_of({"type": "string", "oneOf": [1]} | {"type": "tuple"})
    with pytest.raises(ValueError, match="list shape"):
        page_item({"title": "ListPublic[X]", "properties": {"items": {}}})
