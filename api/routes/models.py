"""Models: what a user can train on (the directory scan, shared records and their own exports)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.schemas import ErrorBody, ModelPublic, ModelsPublic
from core.services import catalog
from trainer.model_defaults import ModelDefaultsError, read_model_defaults

router = APIRouter(prefix="/models", tags=["models"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}
log = logging.getLogger(__name__)


def _public(model: catalog.CatalogModel) -> ModelPublic:
    return ModelPublic(**catalog.model_details(model),
                       config_defaults=_defaults(model.name, model.path))


def _defaults(name: str, path: Path) -> dict[str, Any]:
    """The model's recommended config defaults (trainer/model_defaults.py); {} if none."""
    try:
        return read_model_defaults(path)
    except ModelDefaultsError as exc:  # job creation refuses the model with this message
        log.warning("model %s: %s", name, exc)
        return {}


@router.get("", response_model=ModelsPublic)
def list_available_models(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> ModelsPublic:
    """Every model you may use as a job's `model`, by name."""
    return ModelsPublic(data=[_public(m) for m in catalog.list_models(session, settings, user.id)])


# `name:path`: names are `org/name`; the catalogue validates them and never joins them to a path.
@router.get("/{name:path}", response_model=ModelPublic, responses=ERRORS)
def get_model(name: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> ModelPublic:
    """One model (404 for an unknown name or another user's export)."""
    return _public(catalog.get_model(session, settings, user.id, name, "name"))


@router.delete("/{name:path}", status_code=204, response_class=Response, responses=ERRORS)
def delete_model(name: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete your export (an admin: a shared record) with its directory; 409 while in use."""
    catalog.delete_model(session, settings, user, name)
    return Response(status_code=204)
