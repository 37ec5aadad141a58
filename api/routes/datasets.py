"""Datasets: upload, import (from a Hugging Face dataset), list, get, preview rows, delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.schemas import DatasetPublic, DatasetRowsPublic, DatasetsPublic, ErrorBody
from core.services import dataset_import
from core.services import datasets as service
from core.services.errors import Invalid

router = APIRouter(prefix="/datasets", tags=["datasets"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 413, 415, 422)}
IMPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 413, 415, 422, 502, 507)}


@router.post("", response_model=DatasetPublic, status_code=201, responses=ERRORS)
def upload_dataset(user: CurrentUser, session: SessionDep, settings: SettingsDep,
                   file: Annotated[UploadFile, File(description="JSONL, one row per line.")],
                   name: Annotated[str | None, Form(max_length=200)] = None) -> DatasetPublic:
    """Upload a JSONL dataset; it is validated line by line and stored atomically."""
    dataset = service.create_dataset(session, settings, user, source=file.file, filename=file.filename,
                                     content_type=file.content_type, name=name)
    return DatasetPublic.model_validate(dataset)


@router.post("/import", response_model=DatasetPublic, status_code=201, responses=IMPORT_ERRORS)
def import_dataset(
    user: CurrentUser, session: SessionDep, settings: SettingsDep,
    answer_field: Annotated[str, Form(max_length=200, description="Field holding the answer.")],
    file: Annotated[UploadFile | None, File(
        description="A .parquet, .json, .jsonl or .csv file (or give hub_id).")] = None,
    format: Annotated[Literal["parquet", "json", "csv"] | None, Form(
        description="The file's format when its extension does not say.")] = None,
    hub_id: Annotated[str | None, Form(max_length=200, description=(
        "A Hugging Face dataset id such as openai/gsm8k (instead of a file)."))] = None,
    config: Annotated[str | None, Form(max_length=100, description="The hub dataset's config.")] = None,
    split: Annotated[str, Form(max_length=100, description="The hub dataset's split.")] = "train",
    revision: Annotated[str | None, Form(max_length=100, description="Hub branch, tag or commit.")] = None,
    prompt_field: Annotated[str | None, Form(max_length=200, description=(
        "Field holding the prompt (text or chat messages)."))] = None,
    prompt_template: Annotated[str | None, Form(max_length=20_000, description=(
        "Prompt built from {field} placeholders (instead of prompt_field); {{ and }} are braces."))
    ] = None,
    system_prompt: Annotated[str | None, Form(max_length=20_000, description=(
        "Makes the prompt chat messages: this system message, then the prompt as the user's."))
    ] = None,
    answer_preset: Annotated[Literal["plain", "gsm8k", "boxed"], Form(description=(
        "plain: the field stripped; gsm8k: what follows '####', commas removed; boxed: the last "
        "\\boxed{...}."))] = "plain",
    id_field: Annotated[str | None, Form(max_length=200, description="Field holding row ids.")] = None,
    keep_fields: Annotated[list[str] | None, Form(description=(
        "Fields copied into each row as they are: a comma list, or the form field repeated."))
    ] = None,
    max_rows: Annotated[int | None, Form(ge=1, description="Import only the first rows.")] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetPublic:
    """Import a dataset from a Hugging Face hub id or an uploaded parquet/JSON/CSV file through a
    field mapping; rows are validated one by one (errors name the row) and stored as an upload is."""
    # Repeated `keep_fields` parts are all kept (one string field took the last one silently).
    kept = tuple(f.strip() for part in keep_fields or () for f in part.split(",") if f.strip())
    if sum(len(f) + 1 for f in kept) > 2000:
        raise Invalid("keep_fields: at most 2,000 characters of field names", "keep_fields")
    mapping = dataset_import.FieldMapping(
        answer_field=answer_field, prompt_field=prompt_field, prompt_template=prompt_template,
        system_prompt=system_prompt, answer_preset=answer_preset, id_field=id_field,
        keep_fields=kept)
    hub = None if hub_id is None else dataset_import.HubSource(hub_id, config, split, revision)
    dataset = dataset_import.import_dataset(
        session, settings, user, mapping=mapping, file=None if file is None else file.file,
        filename=None if file is None else file.filename, file_format_name=format, hub=hub,
        max_rows=max_rows, name=name)
    return DatasetPublic.model_validate(dataset)


@router.get("", response_model=DatasetsPublic, responses=ERRORS)
def list_datasets(user: CurrentUser, session: SessionDep,
                  limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  after: Annotated[str | None, Query(max_length=64)] = None) -> DatasetsPublic:
    """Your datasets, newest first."""
    page = service.list_datasets(session, user, after=after, limit=limit)
    return DatasetsPublic(data=[DatasetPublic.model_validate(d) for d in page.data],
                          has_more=page.has_more, next_cursor=page.next_cursor)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=ERRORS)
def get_dataset(dataset_id: str, user: CurrentUser, session: SessionDep) -> DatasetPublic:
    """One dataset."""
    return DatasetPublic.model_validate(service.get_dataset(session, user, dataset_id))


@router.get("/{dataset_id}/rows", response_model=DatasetRowsPublic, responses=ERRORS)
def preview_rows(dataset_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                 offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                 limit: Annotated[int, Query(ge=1, le=100)] = 10) -> DatasetRowsPublic:
    """Rows `offset .. offset+limit` of a dataset, parsed."""
    dataset = service.get_dataset(session, user, dataset_id)
    rows = service.preview_rows(settings, dataset, offset=offset, limit=limit)
    has_more = offset + len(rows) < dataset.rows
    return DatasetRowsPublic(data=rows, has_more=has_more,
                             next_cursor=str(offset + len(rows)) if has_more else None)


@router.delete("/{dataset_id}", status_code=204, response_class=Response, responses=ERRORS)
def delete_dataset(dataset_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete a dataset (409 while an unfinished job uses it)."""
    service.delete_dataset(session, settings, user, dataset_id)
    return Response(status_code=204)
