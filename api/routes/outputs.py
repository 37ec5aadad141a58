"""What a job produced: metrics, advantage histograms, checkpoints (list and .tar download)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response, StreamingResponse

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.routes.models import public_model
from api.schemas import (
    CheckpointPublic,
    CheckpointsPublic,
    ErrorBody,
    HistogramPublic,
    HistogramsPublic,
    MetricsPublic,
    ModelExport,
    ModelPublic,
)
from core.jobs.service import get_job
from core.services import catalog, exports
from core.services import metrics as service
from core.services.errors import Invalid

router = APIRouter(prefix="/jobs/{job_id}", tags=["job outputs"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 404, 422)}
# Like a page's `limit`, it bounds one response: ~250 kB per histogram name at 20 bins.
MAX_HISTOGRAM_STEPS = 1000


@router.get("/metrics", response_model=MetricsPublic, responses=ERRORS)
def read_metrics(job_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                 names: Annotated[str | None, Query(max_length=4000, description="Comma list; default all.")] = None,
                 since_step: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="Inclusive.")] = None,
                 max_points: Annotated[int | None, Query(ge=1, description="Downsample each series to at most this many points.")] = None):
    """Metric series of a job, optionally from a step on and downsampled."""
    if max_points is not None and max_points > settings.max_metric_points:
        raise Invalid(f"max_points must be at most {settings.max_metric_points}", "max_points")
    job = get_job(session, user, job_id)
    name_list = [n.strip() for n in names.split(",") if n.strip()] if names else None
    data = service.read_metrics_json(session, job, names=name_list, since_step=since_step,
                                     max_points=max_points)
    # Spliced, not re-encoded: 100,000 points through pydantic and json.dumps would triple the time.
    return Response(f'{{"object":"list","data":{data},"has_more":false,"next_cursor":null}}',
                    media_type="application/json")


@router.get("/advantages", response_model=HistogramsPublic, responses=ERRORS)
def read_advantages(job_id: str, user: CurrentUser, session: SessionDep,
                    since_step: Annotated[int | None, Query(ge=0, le=2**31 - 1, description="Inclusive.")] = None,
                    limit: Annotated[int, Query(ge=1, le=1000, description="Page size; not used with max_steps.")] = 100,
                    max_steps: Annotated[int | None, Query(ge=1, le=MAX_HISTOGRAM_STEPS, description=(
                        "Merge consecutive steps so that at most this many histograms per name cover "
                        "the whole run (one response, no paging); see step_from/step_to."))] = None,
                    ) -> HistogramsPublic:
    """Advantage histograms per step, paged (`next_cursor` is the next `since_step`), or downsampled."""
    job = get_job(session, user, job_id)
    if max_steps is not None:
        merged = service.downsample_histograms(session, job, since_step=since_step, max_steps=max_steps)
        return HistogramsPublic(data=[HistogramPublic(**h) for h in merged])
    rows, has_more, next_step = service.list_histograms(session, job, since_step=since_step, limit=limit)
    return HistogramsPublic(data=[HistogramPublic(step=r.step, step_from=r.step, step_to=r.step, name=r.name,
                                                  edges=r.edges, counts=r.counts) for r in rows],
                            has_more=has_more, next_cursor=str(next_step) if has_more else None)


@router.get("/checkpoints", response_model=CheckpointsPublic, responses=ERRORS)
def list_checkpoints(job_id: str, user: CurrentUser, session: SessionDep) -> CheckpointsPublic:
    """Checkpoints of a job, by step."""
    job = get_job(session, user, job_id)
    return CheckpointsPublic(data=[CheckpointPublic.model_validate(c)
                                   for c in service.list_checkpoints(session, job)])


@router.get("/checkpoints/{checkpoint_id}/content", response_class=StreamingResponse,
            responses={**ERRORS, 200: {"content": {"application/x-tar": {}}}})
def download_checkpoint(job_id: str, checkpoint_id: str, user: CurrentUser, session: SessionDep,
                        settings: SettingsDep) -> StreamingResponse:
    """The checkpoint directory as a .tar stream."""
    job = get_job(session, user, job_id)
    checkpoint, path = service.get_checkpoint(session, settings, job, checkpoint_id)
    name = f"{job.id}-step-{checkpoint.step:06d}"
    return StreamingResponse(service.iter_tar(path, name), media_type="application/x-tar",
                             headers={"Content-Disposition": f'attachment; filename="{name}.tar"'})


@router.post("/checkpoints/{checkpoint_id}/export", response_model=ModelPublic, status_code=201,
             responses={**ERRORS, **{code: {"model": ErrorBody} for code in (409, 507)}})
def export_checkpoint(job_id: str, checkpoint_id: str, user: CurrentUser, session: SessionDep,
                      settings: SettingsDep, body: Annotated[ModelExport | None, Body()] = None) -> ModelPublic:
    """Export a checkpoint as a model of yours (usable as a job's `model`); LoRA merged by default."""
    body = body or ModelExport()
    record = exports.export_job_checkpoint(session, settings, user.id, job_id, checkpoint_id,
                                           name=body.name, merge_lora=body.merge_lora)
    return public_model(catalog.get_model(session, settings, user.id, record.name))  # as GET /v1/models/{name}
