"""Pulling models from a Hugging Face hub (admins): `POST /v1/models` starts a pull and answers
202 at once; the download runs in a background thread of this API process
(core/services/model_store.py), and `GET /v1/model-pulls/{id}` reports its progress."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import AdminUser, ModelPullsDep, SettingsDep
from api.schemas import (
    ErrorBody,
    ErrorDetail,
    ModelPublic,
    ModelPullCreate,
    ModelPullPublic,
    ModelPullsPublic,
)
from core.services import catalog
from core.services.errors import NotFound
from core.services.model_store import Pull
from core.settings import Settings

router = APIRouter(tags=["models"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 502, 507)}


def pull_public(pull: Pull, settings: Settings) -> ModelPullPublic:
    plan, record, model = pull.plan, pull.record, None
    if record is not None:  # shared (owner NULL): what every user's GET /v1/models shows
        found = catalog.CatalogModel(record.name, catalog.record_dir(settings, record), record.source,
                                     record, False)
        model = ModelPublic(**catalog.model_details(found))
    return ModelPullPublic(
        id=pull.id, status=pull.status, name=plan.name, repo_id=plan.repo_id, revision=plan.requested,
        commit=plan.commit, files=sorted(plan.files), bytes_total=plan.total_bytes,
        bytes_done=pull.bytes_done(), error=ErrorDetail(**pull.error) if pull.error else None,
        model=model,
        created_at=pull.created_at, finished_at=pull.finished_at)


@router.post("/models", status_code=202, response_model=ModelPullPublic, responses=ERRORS)
def pull_model(body: ModelPullCreate, admin: AdminUser, pulls: ModelPullsDep,
               settings: SettingsDep) -> ModelPullPublic:
    """Pull a model from the hub (admins): checked now (revision, safetensors, size), downloaded
    in the background; poll GET /v1/model-pulls/{id}."""
    return pull_public(pulls.start(body.repo_id, body.revision, body.name), settings)


@router.get("/model-pulls", response_model=ModelPullsPublic, responses=ERRORS)
def list_pulls(admin: AdminUser, pulls: ModelPullsDep, settings: SettingsDep) -> ModelPullsPublic:
    """Running and recently finished pulls of this API process, newest first (admins)."""
    return ModelPullsPublic(data=[pull_public(p, settings) for p in pulls.list()])


@router.get("/model-pulls/{pull_id}", response_model=ModelPullPublic, responses=ERRORS)
def get_pull(pull_id: str, admin: AdminUser, pulls: ModelPullsDep,
             settings: SettingsDep) -> ModelPullPublic:
    """One pull's status and progress (admins)."""
    pull = pulls.get(pull_id)
    if pull is None:
        raise NotFound(f"no pull {pull_id!r} (pulls are kept in memory until the API restarts)",
                       "pull_id")
    return pull_public(pull, settings)
