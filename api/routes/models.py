"""Models: HF directories under the configured model roots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from api.deps import CurrentUser, SettingsDep
from api.schemas import ModelPublic, ModelsPublic
from core.services.catalog import list_models
from trainer.model_defaults import ModelDefaultsError, read_model_defaults

router = APIRouter(prefix="/models", tags=["models"])
log = logging.getLogger(__name__)


def _defaults(name: str, path: Path) -> dict[str, Any]:
    try:
        return read_model_defaults(path)
    except ModelDefaultsError as exc:  # job creation refuses the model with this message
        log.warning("model %s: %s", name, exc)
        return {}


@router.get("", response_model=ModelsPublic)
def list_available_models(user: CurrentUser, settings: SettingsDep) -> ModelsPublic:
    """Every model a job may use, by name."""
    return ModelsPublic(data=[ModelPublic(id=name, name=name, config_defaults=_defaults(name, path))
                              for name, path in list_models(settings).items()])
