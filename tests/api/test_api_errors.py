"""Every failure is a 4xx in the `{"error": {"code", "message", "param"}}` shape, never a 500."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st


def assert_error(response, status: int, code: str, param=...):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "param"} and error["code"] == code and error["message"]
    if param is not ...:
        assert error["param"] == param


def test_malformed_json_body(client, alice):
    response = client.post("/v1/jobs", headers={**alice, "content-type": "application/json"}, content=b"{nope")
    assert_error(response, 422, "invalid_request")


def test_missing_body_fields_name_the_field(client, alice):
    assert_error(client.post("/v1/jobs", headers=alice, json={"model": "x"}), 422, "invalid_request", "dataset_id")


def test_oversize_json_body(client, alice, settings):
    settings.max_request_bytes = 10_000
    body = {"dataset_id": "ds_x", "model": "tiny", "config": {"reward_options": {"x": "y" * 20_000}}}
    assert_error(client.post("/v1/jobs", headers=alice, json=body), 413, "too_large")


def test_unknown_route_and_method(client, alice):
    assert_error(client.get("/v1/nothing", headers=alice), 404, "not_found")
    assert_error(client.put("/v1/jobs", headers=alice), 405, "method_not_allowed")


def test_bad_query_values(client, alice, job):
    assert_error(client.get("/v1/jobs?limit=abc", headers=alice), 422, "invalid_request", "limit")
    assert_error(client.get(f"/v1/jobs/{job['id']}/events?after=-1", headers=alice), 422,
                 "invalid_request", "after")
    assert_error(client.get(f"/v1/jobs/{job['id']}/metrics?since_step=99999999999999", headers=alice),
                 422, "invalid_request", "since_step")


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=300), number=st.integers(min_value=-(2**70), max_value=2**70))
def test_hostile_ids_and_params_never_500(client, alice, text, number):
    for method, path, params in [
        ("GET", "/v1/jobs/{}", {}), ("POST", "/v1/jobs/{}/cancel", {}),
        ("GET", "/v1/jobs/{}/metrics", {"names": text, "since_step": number, "max_points": number}),
        ("GET", "/v1/jobs", {"after": text, "status": text, "limit": number}),
        ("GET", "/v1/datasets/{}/rows", {"offset": number}),
        ("GET", "/v1/jobs/{}/checkpoints/{}/content", {}),
    ]:
        url = path.format(*[quote(text, safe="") or "x"] * path.count("{}"))
        response = client.request(method, url, headers=alice, params=params)
        assert response.status_code < 500, (method, url, params, response.text)


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                         lambda children: st.lists(children, max_size=4)
                         | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=20))
def test_hostile_job_bodies_never_500(client, alice, body):
    response = client.post("/v1/jobs", headers=alice, json=body)
    assert 400 <= response.status_code < 500, response.text


def test_nul_bytes_never_reach_the_database(client, alice, job, upload, settings):
    # PostgreSQL refuses NUL in text; that must be a 4xx (or a plain miss), never a 500.
    for method, url, params in [("GET", f"/v1/jobs/{quote(chr(0))}", {}),
                                ("GET", "/v1/jobs", {"after": "job_\x00"}),
                                ("GET", f"/v1/jobs/{job['id']}/metrics", {"names": "a\x00"}),
                                ("GET", f"/v1/datasets/ds_{quote(chr(0))}/rows", {})]:
        response = client.request(method, url, headers=alice, params=params)
        assert response.status_code < 500, (url, response.text)
    files_before = sorted(settings.datasets_dir.iterdir())
    response = upload(alice, name="x\x00y")  # PostgreSQL refuses it at commit, after the file is written
    assert response.status_code in (201, 422)
    if response.status_code == 422:
        assert sorted(settings.datasets_dir.iterdir()) == files_before  # the file was removed again
    response = client.post("/v1/jobs", headers=alice, json={"dataset_id": "\x00", "model": "tiny"})
    assert 400 <= response.status_code < 500


def test_deeply_nested_json_body_is_a_4xx(client, alice):
    body = b'{"dataset_id": "ds_x", "model": "tiny", "config": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    response = client.post("/v1/jobs", headers={**alice, "content-type": "application/json"}, content=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == "invalid_request"
