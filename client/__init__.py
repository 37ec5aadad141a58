"""The typed Python client of the BASIS REST API, shared by the `basis` CLI, the dashboard and the
`basis up --demo` scenario.

It depends on httpx and pydantic only (plus the dependency-free `core.status`), never on the
server's packages, so the dashboard image needs nothing of api/, core/ or worker/. The models in
`client.models` are generated from the API's OpenAPI schema (scripts/gen_client_models.py); a
contract test fails when they drift.
"""

from client.models import (
    CheckpointPublic,
    ComponentsPublic,
    DatasetPublic,
    EvalPublic,
    EvalSamplePublic,
    EventPublic,
    Health,
    HistogramPublic,
    JobPublic,
    LogLinePublic,
    MetricSeries,
    ModelPublic,
    Page,
    SamplePublic,
)
from client.rest import (
    DEFAULT_URL,
    ApiError,
    ApiUnreachable,
    BasisClient,
    NotFound,
    Unauthorized,
    env_connection,
    follow_pages,
)

__all__ = [
    "DEFAULT_URL", "ApiError", "ApiUnreachable", "BasisClient", "CheckpointPublic",
    "ComponentsPublic", "DatasetPublic", "EvalPublic", "EvalSamplePublic", "EventPublic", "Health", "HistogramPublic", "JobPublic",
    "LogLinePublic", "MetricSeries", "ModelPublic", "NotFound", "Page", "SamplePublic", "Unauthorized", "env_connection", "follow_pages",
]
