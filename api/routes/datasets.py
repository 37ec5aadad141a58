"""Datasets: upload, list, get, preview rows, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.schemas import DatasetPublic, DatasetRowsPublic, DatasetsPublic, ErrorBody
from core.services import datasets as service

router = APIRouter(prefix="/datasets", tags=["datasets"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 409, 413, 415, 422)}


@router.post("", response_model=DatasetPublic, status_code=201, responses=ERRORS)
def upload_dataset(user: CurrentUser, session: SessionDep, settings: SettingsDep,
                   file: Annotated[UploadFile, File(description="JSONL, one row per line.")],
                   name: Annotated[str | None, Form(max_length=200)] = None) -> DatasetPublic:
    """Upload a JSONL dataset; it is validated line by line and stored atomically."""
    dataset = service.create_dataset(session, settings, user, source=file.file, filename=file.filename,
                                     content_type=file.content_type, name=name)
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
