"""Network helpers shared by the tests that start real servers (`basis up`, uvicorn, redis-server,
postgres): one copy, imported everywhere, instead of a copy per test file."""

from __future__ import annotations

import socket

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_healthy(url: str, timeout: float = 5) -> bool:
    """Whether the API at `url` answers `GET /v1/health` with 200; False while it cannot connect."""
    try:
        return httpx.get(f"{url}/v1/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False
