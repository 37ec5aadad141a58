"""A Hugging Face hub on localhost for tests: the endpoints huggingface_hub 2.4.0 calls to pull a
model repo, over real HTTP, so `snapshot_download` runs unmodified (no mocks of the download).

What huggingface_hub asks for (read in .venv/.../huggingface_hub: hf_api.py, _snapshot_download.py,
file_download.py):
- `GET /api/models/{repo}[/revision/{rev}]` (`HfApi.model_info`): `id`, `sha` (the commit the
  revision resolves to), `siblings` (`rfilename`, and `size` when `?blobs=true`).
- `GET /api/models/{repo}/tree/{rev}?recursive=...` (`list_repo_tree`, also inside
  `snapshot_download`): a JSON list of `{"type": "file", "path", "size", "oid"}`; no `Link` header,
  so one page. No `xetHash`, so downloads take the plain HTTP path, never Xet.
- `HEAD` / `GET /{repo}/resolve/{rev}/{file}` (`hf_hub_download`): the file with `X-Repo-Commit`,
  `ETag` and `Content-Length`; again no `X-Xet-*` header.
Errors carry the hub's `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`,
`EntryNotFound`), which is how huggingface_hub tells them apart.

`HubServer.add_repo(repo_id, files)` publishes a repo at one commit (branch `main`);
`fail_get[(repo_id, file)] = status` makes the body of that file fail, `slow_get[(repo_id, file)]
= seconds` delays it (a pull in progress, to watch); `requests` records
(method, path, Authorization) of every request.

Standalone, to try `basis models pull` by hand (docs/models.md): `python -m tests.hub_server
[--port N] [--repo ORG/NAME=DIR ...]` serves each DIR (a model saved by save_pretrained) as a repo,
besides a random tiny model as `org/tiny` and a pickled-only one as `org/pickled` (refused by a
pull), and prints the `HF_ENDPOINT` to give the API server.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Repo:
    commit: str
    files: dict[str, bytes]
    refs: dict[str, str] = field(default_factory=dict)


def repo_files(directory: str | Path) -> dict[str, bytes]:
    """Every file under `directory` (relative path -> bytes): a model saved by save_pretrained."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class HubServer:
    """A threaded HTTP server serving hub repos; use as a context manager. `url` is HF_ENDPOINT."""

    def __init__(self, port: int = 0) -> None:
        self.repos: dict[str, Repo] = {}
        self.fail_get: dict[tuple[str, str], int] = {}
        self.slow_get: dict[tuple[str, str], float] = {}  # seconds to wait before sending the body
        self.requests: list[tuple[str, str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        """Publish `files` as the one commit of `repo_id`, on branch `main`; returns the commit sha."""
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        commit = digest.hexdigest()
        self.repos[repo_id] = Repo(commit=commit, files=dict(files), refs={"main": commit})
        return commit

    def resolve(self, repo_id: str, revision: str) -> Repo | str | None:
        """The repo, or the X-Error-Code that refuses it."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return "RepoNotFound"
        if revision != repo.commit and revision not in repo.refs:
            return "RevisionNotFound"
        return repo

    def downloads(self, repo_id: str) -> list[str]:
        """Files of `repo_id` whose body was requested (GET .../resolve/...)."""
        prefix = f"/{repo_id}/resolve/"
        return [path.split("/", 1)[1] for method, p, _ in self.requests if method == "GET"
                and p.startswith(prefix) for path in [p[len(prefix):]]]


API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)/(?P<kind>revision|tree)/(?P<rev>[^/]+)$"
                    r"|^/api/models/(?P<info>[^/]+/[^/]+)$")  # model_info without a revision: main
RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, code: str) -> None:
            self._send(status, json.dumps({"error": code}).encode(), {"X-Error-Code": code})

        def _handle(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append((self.command, path, self.headers.get("Authorization")))
            if (match := API_RE.match(path)) and self.command == "GET":
                self._api(match, parse_qs(url.query))
            elif match := RESOLVE_RE.match(path):
                self._resolve(match)
            else:
                self._error(404, "RepoNotFound")

        def _api(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
            repo_id, kind = match["repo"] or match["info"], match["kind"] or "revision"
            repo = hub.resolve(repo_id, match["rev"] or "main")
            if isinstance(repo, str) or repo is None:
                return self._error(404, repo or "RepoNotFound")
            blobs = query.get("blobs", [""])[0].lower() == "true"
            if kind == "revision":
                siblings = [{"rfilename": name, **({"size": len(data)} if blobs else {})}
                            for name, data in sorted(repo.files.items())]
                body = {"id": repo_id, "modelId": repo_id, "sha": repo.commit,
                        "private": False, "siblings": siblings}
            else:
                body = [{"type": "file", "path": name, "size": len(data),
                         "oid": hashlib.sha1(data).hexdigest()} for name, data in sorted(repo.files.items())]
            self._send(200, json.dumps(body).encode())

        def _resolve(self, match: re.Match[str]) -> None:
            repo = hub.resolve(match["repo"], match["rev"])
            if isinstance(repo, str) or repo is None:
                return self._error(404, repo or "RepoNotFound")
            data = repo.files.get(match["file"])
            if data is None:
                return self._error(404, "EntryNotFound")
            headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            failure = hub.fail_get.get((match["repo"], match["file"]))
            if failure and self.command == "GET":
                return self._send(failure, b'{"error": "injected failure"}', headers)
            if self.command == "GET":
                time.sleep(hub.slow_get.get((match["repo"], match["file"]), 0.0))
            self._send(200, data, headers, content_type="application/octet-stream")

        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

    return Handler


# -- pytest fixtures: import them into a test module (`from tests.hub_server import hub, ...`) ------

import pytest  # noqa: E402 - the server above needs no pytest


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> dict[str, bytes]:
    """The project's tiny Qwen2 model (trainer/tiny.py, safetensors), as hub repo files."""
    from trainer.tiny import build_tiny_model

    return repo_files(build_tiny_model(tmp_path_factory.mktemp("hub-tiny") / "m", hidden=64,
                                       layers=1, heads=2))


@pytest.fixture
def hub(tiny_model_files, monkeypatch):
    """A running local hub with `org/tiny` (safetensors) and `org/pickled` (pytorch_model.bin only),
    and HF_ENDPOINT / HF_TOKEN pointing at it."""
    with HubServer() as server:
        server.add_repo("org/tiny", tiny_model_files)
        server.add_repo("org/pickled", {"config.json": tiny_model_files["config.json"],
                                        "pytorch_model.bin": b"\x80\x04pickle" * 100})
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield server


def main(argv: list[str] | None = None) -> None:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m tests.hub_server",
                                     description="A local Hugging Face hub serving model directories.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--repo", action="append", default=[], metavar="ORG/NAME=DIR",
                        help="also serve DIR as repo ORG/NAME (repeatable); org/tiny and org/pickled always")
    args = parser.parse_args(argv)
    repos: dict[str, dict[str, bytes]] = {}
    for spec in args.repo:
        repo_id, sep, directory = spec.partition("=")
        if not sep or not Path(directory).is_dir():
            parser.error(f"--repo {spec!r}: expected ORG/NAME=DIR with an existing directory")
        repos[repo_id] = repo_files(directory)
    from trainer.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        tiny = repo_files(build_tiny_model(Path(tmp) / "m", hidden=64, layers=1, heads=2))
    repos = {"org/tiny": tiny, "org/pickled": {"config.json": tiny["config.json"],
                                               "pytorch_model.bin": b"\x80\x04pickle" * 100}, **repos}
    with HubServer(args.port) as server:
        for repo_id, files in repos.items():
            print(f"{repo_id} @ {server.add_repo(repo_id, files)} ({len(files)} files)", flush=True)
        print(f"HF_ENDPOINT={server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
