"""AppTest helpers: run the dashboard against an API, and read its charts back out of the protos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
STEPS = 2000  # steps of the seeded BASIS job


def app_test(url: str, key: str, page: str | None = None, **query: str) -> AppTest:
    """An AppTest of the dashboard connected to `url` with `key`, run once on `page`."""
    os.environ["BASIS_API_URL"] = url  # the server's setting: visitors cannot edit it (issue 18)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["api_key"] = key
    at.run()
    if page:
        at.switch_page(page)
        for name, value in query.items():
            at.query_params[name] = value
        at.run()
    return at


def charts(at: AppTest) -> list[dict]:
    """Every Altair chart on the page as {"spec": dict, "data": DataFrame of all its datasets}."""
    found = []
    for node in at.get("vega_lite_chart"):
        frames = [pa.ipc.open_stream(d.data.data).read_pandas() for d in node.proto.datasets]
        if node.proto.data.data:
            frames.append(pa.ipc.open_stream(node.proto.data.data).read_pandas())
        data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        found.append({"spec": json.loads(node.proto.spec), "data": data})
    return found


def chart_with(at: AppTest, text: str) -> dict:
    """The one chart whose spec mentions `text` (an axis title)."""
    matches = [c for c in charts(at) if text in json.dumps(c["spec"])]
    assert len(matches) == 1, f"{len(matches)} charts mention {text!r}"
    return matches[0]
