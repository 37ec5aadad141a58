"""What a job can be configured with: estimators, rewards and rollout engines, with their options.

Read from the trainer's registries (`trainer.advantages.ESTIMATORS`, `trainer.rewards.REWARDS`,
`trainer.rollout.available_engines` + `trainer.rollout.options.ENGINE_OPTIONS`), so a component
registered in the trainer shows up here and in the dashboard's New job form without a second list
to keep in step. Options come as JSON Schema (pydantic's), the same models `TrainConfig` validates
a job against. Importing the registries pulls in numpy/scipy but never torch (the slim API image).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentUser

router = APIRouter(prefix="/components", tags=["components"])


class Component(BaseModel):
    name: str
    description: str = Field(description="first line of the component's documentation")
    options: dict[str, Any] | None = Field(
        description="JSON Schema of the component's options; null = it checks them itself")


class EstimatorComponent(Component):
    min_rollouts: int = Field(description="rollouts per prompt it needs (1 = single-rollout)")


class ComponentsPublic(BaseModel):
    estimators: list[EstimatorComponent]
    rewards: list[Component]
    engines: list[Component]
    defaults: dict[str, Any] = Field(
        description="The job config's default for every field a user may set (POST /v1/jobs `config`)")


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return model.model_json_schema() if model is not None else None


def list_components() -> ComponentsPublic:
    from core.jobs.config import default_config
    from trainer.advantages import ESTIMATORS
    from trainer.rewards import REWARDS
    from trainer.rollout import available_engines
    from trainer.rollout.options import ENGINE_OPTIONS

    return ComponentsPublic(
        estimators=[
            EstimatorComponent(name=name, description=_first_line(cls), min_rollouts=cls.min_rollouts,
                               options=_schema(cls.Options))
            for name, cls in sorted(ESTIMATORS.items())
        ],
        rewards=[
            Component(name=name, description=_first_line(spec.fn), options=_schema(spec.options))
            for name, spec in sorted(REWARDS.items())
        ],
        engines=[
            Component(name=name, description=_first_line(ENGINE_OPTIONS.get(name)) if name in
                      ENGINE_OPTIONS else "", options=_schema(ENGINE_OPTIONS.get(name)))
            for name in available_engines()
        ],
        defaults=default_config(),
    )


@router.get("", response_model=ComponentsPublic)
def read_components(user: CurrentUser) -> ComponentsPublic:
    """Estimators, rewards and rollout engines a job may name, with their options."""
    return list_components()
