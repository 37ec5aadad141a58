"""Models: HF directories under the configured model roots."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentUser, SettingsDep
from api.schemas import ModelPublic, ModelsPublic
from core.services.catalog import list_models

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelsPublic)
def list_available_models(user: CurrentUser, settings: SettingsDep) -> ModelsPublic:
    """Every model a job may use, by name."""
    return ModelsPublic(data=[ModelPublic(id=name, name=name) for name in list_models(settings)])
