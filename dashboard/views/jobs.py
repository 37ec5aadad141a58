"""Jobs: every job of this key's user, filterable by status; select a row to open it."""

from __future__ import annotations

import streamlit as st

from core.status import JobStatus
from dashboard import state
from dashboard.tables import jobs_frame

STATUSES = ["all", *(status.value for status in JobStatus)]

st.title("Jobs")
if notice := st.session_state.pop("jobs_notice", None):  # left by an action on another page
    st.success(notice, icon=":material/check_circle:")
url, key = state.connection()
status = st.selectbox("Status", STATUSES, key="jobs_status")
jobs = state.call(state.fetch_jobs, url, key, None if status == "all" else status)

if not jobs:
    if status == "all":
        st.info("No jobs yet. Upload a dataset and start one on the New job page.", icon=":material/info:")
        st.page_link("views/new_job.py", label="New job", icon=":material/add_circle:")
    else:
        st.info(f"No {status} jobs.")
    st.stop()

datasets = state.call(state.fetch_datasets, url, key)
frame = jobs_frame(jobs, {d["id"]: d["name"] for d in datasets})
ids = frame["id"].tolist()


def _open_selected() -> None:
    # A callback, not a check of the current selection: a selection survives a visit to another
    # page, and re-reading it on the way back would bounce the user straight out again.
    rows = st.session_state["jobs_table"].selection.rows
    if rows:
        st.session_state["open_job"] = ids[rows[0]]


st.dataframe(
    frame, hide_index=True, width="stretch", on_select=_open_selected,
    selection_mode="single-row", key="jobs_table",
    column_config={
        "id": st.column_config.TextColumn("job", width="medium"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                    format="percent", width="small"),
        "latest reward": st.column_config.NumberColumn("reward", format="%.3f",
                                                       help="reward/mean at the latest step"),
        "started": st.column_config.DatetimeColumn("started (UTC)", format="MMM D, HH:mm"),
    },
)
st.caption(f"{len(jobs)} job(s). Select a row, or pick one below, to open it.")

left, right = st.columns([3, 1], vertical_alignment="bottom")
picked = left.selectbox("Open job", ids, format_func=lambda i: state.job_label(jobs[ids.index(i)]),
                        key="jobs_open")
if right.button("Open", type="primary", key="jobs_open_button"):
    st.session_state["open_job"] = picked
if job_id := st.session_state.pop("open_job", None):
    st.session_state["job_id"] = job_id
    st.switch_page("views/job_detail.py", query_params={"job": job_id})
