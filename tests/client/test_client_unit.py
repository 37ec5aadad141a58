"""The client's own logic with a fake transport: validation of answers, cursor following, errors.
(Against the real API: tests/dashboard/test_dashboard_client.py and tests/api/test_api_cli_client.py.)"""

from __future__ import annotations

import json

import httpx
import pytest

from client import ApiError, BasisClient, NotFound, Page, follow_pages
from client.rest import Route


def _client(handler) -> BasisClient:
    return BasisClient("http://api", "bk_test", transport=httpx.MockTransport(handler))


def test_an_answer_that_does_not_match_the_schema_is_an_api_error():
    api = _client(lambda request: httpx.Response(200, json={"id": "job_1", "status": "queued"}))
    with pytest.raises(ApiError, match="unexpected GET /v1/jobs/{job_id} body"):
        api.get_job("job_1")


def test_key_header_ids_quoted_and_api_error_fields():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no job 'a/b'",
                                                   "param": "job_id"}})

    with pytest.raises(NotFound) as info:
        _client(handler).get_job("a/b")
    assert (info.value.code, info.value.param, str(info.value)) == (
        "not_found", "job_id", "no job 'a/b' (job_id)")
    assert seen[0].headers["Authorization"] == "Bearer bk_test"
    assert seen[0].url.raw_path == b"/v1/jobs/a%2Fb"  # an id never changes the route


def test_events_follow_cursors_from_after():
    events = [{"id": i, "object": "event", "job_id": "j", "created_at": "2026-01-01T00:00:00Z",
               "ts": "2026-01-01T00:00:00Z", "kind": "k", "level": "info", "message": str(i),
               "data": None} for i in range(1, 8)]
    afters = []

    def handler(request: httpx.Request) -> httpx.Response:
        after, limit = int(request.url.params["after"]), int(request.url.params["limit"])
        afters.append(after)
        page = [e for e in events if e["id"] > after][:limit]
        more = bool(page) and page[-1]["id"] < events[-1]["id"]
        return httpx.Response(200, text=json.dumps({
            "object": "list", "data": page, "has_more": more,
            "next_cursor": str(page[-1]["id"]) if more else None}))

    got = list(_client(handler).iter_events("j", after=2, page_size=2))
    assert [e.id for e in got] == [3, 4, 5, 6, 7] and afters == [2, 4, 6]


def test_follow_pages_stops_at_max_items_without_another_request():
    calls = []

    def fetch(cursor: str | None) -> Page[int]:
        calls.append(cursor)
        start = int(cursor or 0)
        return Page[int](data=[start, start + 1], has_more=True, next_cursor=str(start + 2))

    assert list(follow_pages(fetch, max_items=3)) == [0, 1, 2] and calls == [None, "2"]


def test_a_route_outside_the_table_is_refused():
    with pytest.raises(KeyError, match="not in client.rest.ROUTES"):
        _client(lambda request: httpx.Response(200))._request(Route("GET", "/v1/secret", None))


def test_export_waits_past_the_client_timeout_for_a_slow_merge():
    """A real socket (a fake transport ignores timeouts): the export answers after 1.5 s, three times
    the client's timeout, as a LoRA merge of a large model answers after minutes; other calls still
    give up at the client's timeout."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from client import ApiUnreachable
    from client.rest import EXPORT_TIMEOUT

    class Slow(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            time.sleep(1.5)
            body = json.dumps({"id": "ft/job_1-step2", "name": "ft/job_1-step2",
                               "source": "export"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with BasisClient(f"http://127.0.0.1:{server.server_port}", "bk_test", timeout=0.5) as api:
            assert api.export_checkpoint("job_1", "ckpt_1").id == "ft/job_1-step2"
            with pytest.raises(ApiUnreachable, match="did not answer in time"):
                api.get_model("ft/job_1-step2")
            with pytest.raises(ApiUnreachable, match="did not answer in time"):
                api.export_checkpoint("job_1", "ckpt_1", timeout=0.5)
    finally:
        server.shutdown()
        server.server_close()
    assert EXPORT_TIMEOUT >= 600


def test_basis_jobs_export_help_says_how_long_it_waits(capsys):
    from cli.main import build_parser
    from client.rest import EXPORT_TIMEOUT

    with pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"waits up to {EXPORT_TIMEOUT / 60:.0f} minutes" in help_text
