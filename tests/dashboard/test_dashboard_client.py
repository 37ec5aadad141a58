"""The shared REST client (`client/`, used by the dashboard, CLI and demo) against the real API over
HTTP: paging, errors by kind, field names."""

from __future__ import annotations

import httpx
import pytest

from client import ApiError, ApiUnreachable, BasisClient, NotFound, Unauthorized
from tests.net import free_port


@pytest.fixture
def api(stack):
    with BasisClient(stack.url, stack.keys["alice"]) as client:
        yield client


def test_iter_jobs_follows_cursors(api, stack):
    ids = [job.id for job in api.iter_jobs(page_size=1)]
    assert ids == [stack.seeded.basis_job, stack.seeded.grpo_job, stack.seeded.failed_job]
    assert len(list(api.iter_jobs(page_size=1, max_items=2))) == 2


def test_advantages_follow_pages_without_gaps(api, stack):
    histograms = api.advantages(stack.seeded.grpo_job, page_size=7)
    assert [h.step for h in histograms] == list(range(1, stack.seeded.steps // 4 + 1))


def test_advantages_downsampled_cover_the_whole_run_in_one_request(api, stack):
    requests = []
    client = BasisClient(stack.url, stack.keys["alice"], transport=_Recording(requests))
    histograms = client.advantages(stack.seeded.basis_job, max_steps=300)
    assert len(requests) == 1 and "max_steps=300" in str(requests[0].url)
    assert len(histograms) <= 300
    assert histograms[0].step_from == 1 and histograms[-1].step_to == stack.seeded.steps
    # Every step's 16 * 8 samples are in exactly one histogram.
    assert sum(sum(h.counts) for h in histograms) == stack.seeded.steps * 16 * 8
    with pytest.raises(ApiError) as info:
        api.advantages(stack.seeded.basis_job, max_steps=0)
    assert info.value.status == 422 and info.value.param == "max_steps"


class _Recording(httpx.HTTPTransport):
    def __init__(self, requests: list):
        super().__init__()
        self.requests = requests

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_metrics_downsample_and_select_names(api, stack):
    series = api.metrics(stack.seeded.basis_job, names=["reward/mean", "eval/accuracy"], max_points=50)
    assert [s.name for s in series] == ["eval/accuracy", "reward/mean"]
    assert len(series[1].steps) <= 50 and series[1].steps[-1] == stack.seeded.steps


def test_checkpoint_content_is_a_tar(api, stack):
    import io
    import tarfile

    data = api.checkpoint_content(stack.seeded.basis_job, stack.seeded.checkpoint_id)
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert any(name.endswith("model.safetensors") for name in names)


def test_error_kinds(api, stack):
    with pytest.raises(Unauthorized, match="invalid or revoked"):
        BasisClient(stack.url, "bk_wrong").get_job(stack.seeded.basis_job)
    with pytest.raises(Unauthorized):
        BasisClient(stack.url, None).list_jobs()
    with pytest.raises(NotFound) as info:
        api.get_job("job_nope")
    assert info.value.status == 404 and info.value.param == "job_id"
    with pytest.raises(ApiUnreachable, match="cannot reach the API"):
        BasisClient(f"http://127.0.0.1:{free_port()}", "k").health()


def test_create_job_error_names_the_field(api, stack):
    with pytest.raises(ApiError) as info:
        api.create_job(dataset_id=stack.seeded.dataset_id, model=stack.seeded.model,
                       config={"optimizer": {"lr": -1}})
    assert info.value.status == 422 and info.value.param == "config.optimizer.lr"


def test_non_json_error_bodies_still_become_api_errors():
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="Bad Gateway"))
    with pytest.raises(ApiError, match="HTTP 502: Bad Gateway") as info:
        BasisClient("http://api", "k", transport=transport).list_jobs()
    assert info.value.status == 502 and not isinstance(info.value, ApiUnreachable)


def test_job_carries_every_field_the_api_sends(api, stack):
    """The copied schema the dashboard had lost `queue` and `cancel_requested`; the generated one
    cannot (tests/client/test_client_contract.py)."""
    job = api.get_job(stack.seeded.basis_job)
    assert job.id == stack.seeded.basis_job and job.queue and job.cancel_requested is False
    assert api.get_dataset(job.dataset_id).id == job.dataset_id
    rows = api.dataset_rows(job.dataset_id, limit=2)
    assert len(rows.data) == 2 and rows.has_more and set(rows.data[0]) >= {"prompt", "answer"}
