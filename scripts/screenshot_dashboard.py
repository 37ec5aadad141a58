"""Screenshot the dashboard's Job detail page with headless Chromium (for docs/dashboard.png).

Starts a seeded API (a finished 2,000-step BASIS job, tests/dashboard/dashboard_stack.py) and
`streamlit run dashboard/app.py`, opens `/job?job=<id>` in headless Chromium, waits until every chart
has drawn, saves a full-page PNG and prints one JSON object (time to charts, image statistics).
Needs Debian's chromium (scripts/install_chromium.sh).

    .venv/bin/python scripts/screenshot_dashboard.py [--out docs/dashboard.png] [--page job|jobs|compare]
        [--reloads N]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "dashboard")]

from dashboard_browser import image_stats, screenshot, streamlit_server  # noqa: E402
from dashboard_stack import ApiServer, free_port, seeded_stack  # noqa: E402

PAGES = {  # page: (URL path, charts, tables to wait for)
    "job": ("job?job={job}", 9, 3), "jobs": ("", 0, 1), "compare": ("compare?jobs={job},{grpo}", 1, 1),
    "new": ("new", 0, 0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--page", choices=sorted(PAGES), default="job")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--reloads", type=int, default=0,
                        help="then reload the page N times and report the time to drawn charts")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="basis-screenshot-") as tmp:
        _, app, seeded = seeded_stack(Path(tmp), steps=args.steps)
        path, min_charts, min_tables = PAGES[args.page]
        with ApiServer(app) as api, streamlit_server(api.url, seeded.key, free_port()) as dashboard:
            url = f"{dashboard}/{path.format(job=seeded.basis_job, grpo=seeded.grpo_job)}"
            facts = screenshot(url, args.out, min_charts=min_charts, width=args.width,
                               reloads=args.reloads, min_tables=min_tables)
        app.state.engine.dispose()
    print(json.dumps({**facts, **image_stats(args.out)}))


if __name__ == "__main__":
    main()
