"""tests/net.py is the one copy of the port and health helpers (they were pasted into several test
files, and e2e tests imported them from another test module)."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

from tests.net import api_healthy, free_port

HELPERS = {"free_port", "_free_port", "healthy", "_healthy", "api_healthy"}


def test_no_test_module_defines_its_own_port_or_health_helper():
    root = Path(__file__).parent
    copies = []
    for path in root.rglob("*.py"):
        if path == root / "net.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        copies += [f"{path.relative_to(root)}:{node.lineno} {node.name}" for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef) and node.name in HELPERS]
    assert not copies, f"import these from tests.net instead: {copies}"


def test_free_port_is_bindable_and_api_healthy_is_false_when_nothing_listens():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert api_healthy(f"http://127.0.0.1:{free_port()}", timeout=1) is False
