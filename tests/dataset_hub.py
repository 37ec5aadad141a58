"""A Hugging Face hub of dataset repos on localhost, over real HTTP, for `datasets.load_dataset`
(streaming) with HF_ENDPOINT pointing here. No mocks: the library runs unmodified.

What datasets 5.2 / huggingface_hub 2.4 ask for (seen by logging every request of a streaming
`load_dataset("org/name", config, split=...)`):
- `HEAD`/`GET /datasets/{repo}/resolve/{rev}/{file}`: README.md (its YAML `configs` name the data
  files of each config and split), probes for other files (404 `EntryNotFound`), and the parquet
  file itself in byte ranges (`Range: bytes=a-b`, answered 206).
- `GET /api/datasets/{repo}[/revision/{rev}]`: `sha` (the commit `rev` resolves to), `siblings`.
- `GET /api/datasets/{repo}/tree/{rev}[/{dir}]?recursive=...`: the files, one page.
Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), as the hub's do.
tests/hub_server.py serves model repos the same way for `basis models pull`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
RESOLVE = re.compile(rf"^/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
INFO = re.compile(rf"^/api/datasets/{REPO}(?:/revision/(?P<rev>[^/]+))?$")
TREE = re.compile(rf"^/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<dir>.*))?$")


def readme(configs: dict[str, dict[str, str]]) -> bytes:
    """A dataset card whose YAML maps config -> split -> data file pattern."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    return ("\n".join(lines) + "\n---\n").encode()


class DatasetHub:
    """Threaded HTTP server; `add_repo(repo_id, files)`; `requests` logs (method, path, auth)."""

    def __init__(self) -> None:
        self.repos: dict[str, tuple[str, dict[str, bytes]]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DatasetHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        self.repos[repo_id] = (digest.hexdigest(), dict(files))
        return digest.hexdigest()

    def lookup(self, repo_id: str, rev: str | None) -> tuple[str, dict[str, bytes]] | str:
        if repo_id not in self.repos:
            return "RepoNotFound"
        sha, files = self.repos[repo_id]
        return (sha, files) if rev in (None, "main", sha) else "RevisionNotFound"


def _handler(hub: DatasetHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
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

        def _error(self, code: str) -> None:
            self._send(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code})

        def _handle(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            hub.requests.append((self.command, path, self.headers.get("Authorization")))
            if match := RESOLVE.match(path):
                return self._resolve(match)
            for pattern, answer in ((INFO, self._info), (TREE, self._tree)):
                if (match := pattern.match(path)) and self.command == "GET":
                    found = hub.lookup(match["repo"], match["rev"])
                    if isinstance(found, str):
                        return self._error(found)
                    return answer(match, *found, parse_qs(url.query))
            self._error("RepoNotFound")

        def _info(self, match: re.Match[str], sha: str, files: dict[str, bytes], _q: object) -> None:
            siblings = [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())]
            self._send(200, json.dumps({"id": match["repo"], "sha": sha, "private": False,
                                        "siblings": siblings}).encode())

        def _tree(self, match: re.Match[str], sha: str, files: dict[str, bytes],
                  query: dict[str, list[str]]) -> None:
            prefix = (match["dir"] or "").strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            items, dirs = [], set()
            for name, data in sorted(files.items()):
                if prefix and not name.startswith(prefix + "/"):
                    continue
                rest = name[len(prefix) + 1:] if prefix else name
                if "/" in rest and not recursive:
                    dirs.add(f"{prefix}/{rest.split('/')[0]}".lstrip("/"))
                    continue
                items.append({"type": "file", "path": name, "size": len(data),
                              "oid": hashlib.sha1(data).hexdigest()})
            items += [{"type": "directory", "path": d, "oid": "0" * 40} for d in sorted(dirs)]
            self._send(200, json.dumps(items).encode())

        def _resolve(self, match: re.Match[str]) -> None:
            found = hub.lookup(match["repo"], match["rev"])
            if isinstance(found, str):
                return self._error(found)
            sha, files = found
            data = files.get(match["file"])
            if data is None:
                return self._error("EntryNotFound")
            headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Accept-Ranges": "bytes"}
            wanted = self.headers.get("Range")
            if wanted and self.command == "GET":
                start, _, end = wanted.removeprefix("bytes=").partition("-")
                first, last = int(start), int(end) if end else len(data) - 1
                part = data[first:last + 1]
                headers["Content-Range"] = f"bytes {first}-{first + len(part) - 1}/{len(data)}"
                return self._send(206, part, headers, "application/octet-stream")
            self._send(200, data, headers, "application/octet-stream")

        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

    return Handler
