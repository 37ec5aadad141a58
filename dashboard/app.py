"""BASIS dashboard: `streamlit run dashboard/app.py`.

Reads everything through the REST API (`BASIS_API_URL`, `BASIS_API_KEY`, both editable in the
sidebar). Pages are declared with `st.navigation`, so their URLs are stable (`/jobs`, `/job?job=<id>`,
`/compare?jobs=<id>,<id>`, `/new`) and can be shared.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state

st.set_page_config(page_title="BASIS dashboard", page_icon="📈", layout="wide")

PAGES = [
    st.Page("pages/jobs.py", title="Jobs", icon="📋", url_path="jobs", default=True),
    st.Page("pages/job_detail.py", title="Job detail", icon="📈", url_path="job"),
    st.Page("pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
    st.Page("pages/new_job.py", title="New job", icon="➕", url_path="new"),
]

page = st.navigation(PAGES)
state.sidebar()
page.run()
