"""BASIS dashboard: `streamlit run dashboard/app.py`.

Reads everything through the REST API (`BASIS_API_URL`, `BASIS_API_KEY`, both editable in the
sidebar). Pages are declared with `st.navigation`, so their URLs are stable and can be shared:
`/` (jobs), `/job?job=<id>`, `/compare?jobs=<id>,<id>`, `/new`,
`/evals?dataset=<id>&evals=<id>,<id>` (models compared on one dataset). The page scripts live in `views/`, not
`pages/`: a `pages/` folder beside the main script switches Streamlit into its legacy multipage mode,
where a deep link runs the page file alone (no sidebar, no page config) and the navigation lists files.
Icons are Material icons (bundled with Streamlit), not emoji, which many servers lack fonts for.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state

st.set_page_config(page_title="BASIS dashboard", page_icon=":material/monitoring:", layout="wide",
                   initial_sidebar_state="expanded")

PAGES = [
    st.Page("views/jobs.py", title="Jobs", icon=":material/list:", url_path="jobs", default=True),
    st.Page("views/job_detail.py", title="Job detail", icon=":material/monitoring:", url_path="job"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:",
            url_path="compare"),
    st.Page("views/new_job.py", title="New job", icon=":material/add_circle:", url_path="new"),
    st.Page("views/evals.py", title="Evaluations", icon=":material/fact_check:", url_path="evals"),
]

page = st.navigation(PAGES)
state.sidebar()
page.run()
