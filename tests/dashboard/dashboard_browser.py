"""A real browser on the dashboard: a seeded API, `streamlit run` as a subprocess, headless Chromium
driven over the DevTools protocol, and a screenshot once the charts have drawn.

Choices:
- The DevTools protocol is spoken with `websockets` (a dependency of Streamlit itself), so there is no
  chromedriver/Selenium/Playwright to install: Debian's `chromium` package is the whole browser side.
- Chromium picks its own debugging port (`--remote-debugging-port=0`) and writes it to
  `DevToolsActivePort` in a fresh profile directory, so parallel runs never collide.
- "Charts are drawn" means: at least `min_charts` Vega embeds hold a canvas or SVG, and Streamlit's
  "running" status widget is gone, twice in a row half a second apart.
- The screenshot covers the whole page: the viewport is as tall as Streamlit's scrolling main
  container (see `screenshot`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BASIS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0"]

PAGE_STATE_JS = """(() => {
  const embeds = [...document.querySelectorAll('.vega-embed')];
  const drawn = embeds.filter(e => e.querySelector('canvas, svg.marks')).length;
  const running = !!document.querySelector('[data-testid="stStatusWidget"]');
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  const main = document.querySelector('[data-testid="stMain"]');
  const height = block ? Math.ceil(block.getBoundingClientRect().top + (main ? main.scrollTop : 0)
                                   + block.scrollHeight) : document.body.scrollHeight;
  const errors = [...document.querySelectorAll('[data-testid="stAlertContentError"], [data-testid="stException"]')]
                 .map(e => e.innerText.slice(0, 300));
  const tables = document.querySelectorAll('[data-testid="stDataFrame"] canvas').length;
  const titled = !!document.querySelector('[data-testid="stMainBlockContainer"] h1');
  return {charts: embeds.length, drawn, tables, titled, running, height, errors};
})()"""


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Block until `url` answers 200 (or raise after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def streamlit_server(api_url: str, api_key: str, port: int) -> Iterator[str]:
    """`streamlit run dashboard/app.py` on 127.0.0.1:`port`, pointed at the API; yields its URL."""
    env = {**os.environ, "BASIS_API_URL": api_url, "BASIS_API_KEY": api_key,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
         "--client.toolbarMode", "minimal"],  # as `basis up` and the image: no Deploy button
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/_stcore/health", timeout=90)
        except TimeoutError:
            log.seek(0)
            raise RuntimeError(f"streamlit did not start:\n{log.read().decode()[-3000:]}") from None
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class DevTools:
    """A minimal Chrome DevTools protocol session on one page target."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self.next_id:  # skip unsolicited events
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 2000) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile; yields a DevTools session on its blank page."""
    profile = Path(tempfile.mkdtemp(prefix="basis-chromium-"))
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            session = DevTools(ws)
            session.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                         deviceScaleFactor=1, mobile=False)
            yield session
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_charts(browser: DevTools, min_charts: int, timeout: float, min_tables: int = 0) -> dict:
    """Poll the page until `min_charts` charts and `min_tables` tables are drawn and Streamlit is
    idle; returns its state."""
    start, stable = time.monotonic(), 0
    while True:
        state = browser.evaluate(PAGE_STATE_JS) or {}
        ready = (state.get("titled") and state.get("drawn", 0) >= min_charts
                 and state.get("tables", 0) >= min_tables and not state.get("running"))
        stable = stable + 1 if ready else 0
        if stable >= 2:
            return state
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"charts did not draw within {timeout:.0f} s: {state}")
        time.sleep(0.5)


def wait_for_text(browser: DevTools, text: str, timeout: float) -> float:
    """Seconds until `text` appears in the page's visible text (TimeoutError after `timeout`)."""
    start = time.monotonic()
    probe = f"document.body.innerText.includes({json.dumps(text)})"
    while not browser.evaluate(probe):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{text!r} did not appear within {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - start


def screenshot(url: str, path: Path, *, min_charts: int, width: int = 1400, height: int = 3200,
               timeout: float = 120.0, reloads: int = 0, min_tables: int = 0) -> dict:
    """Open `url`, wait for `min_charts` drawn charts, save a full-page PNG; returns page facts.

    The viewport is `height` tall from the start; a longer page is reloaded in a viewport of its
    own height (resizing a live page makes Streamlit collapse its sidebar), and the capture is
    clipped to the content, so the PNG holds the whole page and nothing below it.
    With `reloads` > 0 the page is then reloaded that many times (browser cache warm, a new
    Streamlit session each time) and each time until every chart is drawn is reported.
    """
    with chromium(width, height) as browser:
        start = time.monotonic()
        browser.call("Page.navigate", url=url)
        state = wait_for_charts(browser, min_charts, timeout, min_tables)
        seconds = time.monotonic() - start
        content = int(state["height"])
        if content > height:
            browser.call("Emulation.setDeviceMetricsOverride", width=width, height=content,
                         deviceScaleFactor=1, mobile=False)
            browser.call("Page.reload")
            time.sleep(1.0)
            state = wait_for_charts(browser, min_charts, timeout, min_tables)
            content = int(state["height"])
        time.sleep(1.0)  # tables and charts finish their last paint
        clip = {"x": 0, "y": 0, "width": width, "height": max(content, 400), "scale": 1}
        png = base64.b64decode(browser.call("Page.captureScreenshot", format="png", clip=clip)["data"])
        reload_seconds = []
        for _ in range(reloads):
            start = time.monotonic()
            browser.call("Page.reload")
            time.sleep(0.2)  # let the old page go before polling the new one
            wait_for_charts(browser, min_charts, timeout, min_tables)
            reload_seconds.append(round(time.monotonic() - start, 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return {"path": str(path), "seconds_to_charts": round(seconds, 2),
            "reload_seconds_to_charts": reload_seconds, **state}


def image_stats(path: Path) -> dict:
    """Grey-level spread and share of coloured pixels: a blank or all-white page has neither."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    small = image.resize((image.width // 4, image.height // 4))
    grey = np.asarray(small.convert("L"), dtype=np.float64)  # (H, W)
    hsv = np.asarray(small.convert("HSV"), dtype=np.float64)  # (H, W, 3)
    coloured = float(((hsv[..., 1] > 80) & (hsv[..., 2] > 60)).mean())
    return {"width": image.width, "height": image.height, "grey_stddev": float(grey.std()),
            "coloured_fraction": coloured}
