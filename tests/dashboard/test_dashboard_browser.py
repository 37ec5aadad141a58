"""A real browser on a running stack: headless Chromium loads Job detail from `streamlit run`
(backed by the seeded API), waits until every chart has drawn, and the screenshot is not blank."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.dashboard.dashboard_browser import CHROMIUM, image_stats, screenshot, streamlit_server
from tests.dashboard.dashboard_stack import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium_available() -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not found: install it with scripts/install_chromium.sh"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it; a skip there would hide a broken browser test
        pytest.skip(message)


def test_job_detail_in_chromium_draws_every_chart(stack, tmp_path, chromium_available):
    path = tmp_path / "job.png"
    with streamlit_server(stack.url, stack.keys["alice"], free_port()) as dashboard:
        facts = screenshot(f"{dashboard}/job?job={stack.seeded.basis_job}", path, min_charts=9)
    assert facts["errors"] == [] and facts["drawn"] == facts["charts"] == 9
    stats = image_stats(path)
    assert stats["width"] == 1400 and stats["height"] > 2000
    # A blank, white or error page has almost no grey-level spread and no coloured pixels; the
    # curves, heatmap and histogram give both.
    assert stats["grey_stddev"] > 10 and stats["coloured_fraction"] > 0.005, stats


def test_running_job_refreshes_live_in_the_browser(stack, running, chromium_available):
    """The fragment's timer (which AppTest cannot run) picks up steps written after page load."""
    from sqlalchemy import update

    from core.db import session_scope
    from core.models import Job
    from tests.dashboard.dashboard_browser import chromium, wait_for_charts, wait_for_text

    key, job_id = running
    with streamlit_server(stack.url, key, free_port()) as dashboard, chromium() as browser:
        browser.call("Page.navigate", url=f"{dashboard}/job?job={job_id}")
        wait_for_charts(browser, min_charts=9, timeout=120)
        step = next(s for s in ("60 / 100", "50 / 100")  # an earlier test may have added 10 steps
                    if browser.evaluate(f"document.body.innerText.includes('{s}')"))
        with session_scope(stack.app.state.engine) as session:
            session.execute(update(Job).where(Job.id == job_id).values(current_step=77))
        assert step != "77 / 100"
        # One refresh period (5 s) plus the cache TTL (3 s), with room for a loaded machine.
        assert wait_for_text(browser, "77 / 100", timeout=60) < 60


def test_samples_render_and_there_is_no_deploy_button(stack, chromium_available):
    from tests.dashboard.dashboard_browser import chromium, wait_for_charts, wait_for_text

    with streamlit_server(stack.url, stack.keys["alice"], free_port()) as dashboard, \
            chromium(1400, 3200) as browser:
        browser.call("Page.navigate", url=f"{dashboard}/job?job={stack.seeded.basis_job}")
        wait_for_charts(browser, 9, timeout=120)
        wait_for_text(browser, "1 unscorable (highlighted", timeout=30)
        # The samples table is drawn (a canvas grid, like the other tables).
        assert browser.evaluate(
            "[...document.querySelectorAll('h3')].some(h => h.innerText.includes('Samples'))")
        assert not browser.evaluate(
            "!!document.querySelector('[data-testid=\"stAppDeployButton\"]')"
            " || [...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Deploy')")
