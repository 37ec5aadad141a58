"""Compare: overlay one metric of several jobs against step, wall-clock or rollouts generated.

The x axis matters for BASIS: one rollout per prompt means a step is cheaper than GRPO's, so the fair
comparisons are against `time/elapsed` and `rollouts/total` (offline prior rollouts included).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from client.summary import format_duration
from dashboard import charts, state

METRICS = ["eval/accuracy", "reward/mean", "reward/accuracy", "value_mse/basis",
           "value_mse/reinforce_pp", "value_mse/group_mean_8", "adv/std", "kl/mean",
           "response/length_mean", "throughput/tokens_per_s", "time/step"]

st.title("Compare jobs")
url, key = state.connection()
jobs = state.call(state.fetch_jobs, url, key)
if not jobs:
    st.info("No jobs yet. Start one on the New job page.", icon=":material/info:")
    st.page_link("views/new_job.py", label="New job", icon=":material/add_circle:")
    st.stop()

by_id = {job["id"]: job for job in jobs}
if "compare_jobs" not in st.session_state:
    wanted = [j for j in st.query_params.get("jobs", "").split(",") if j in by_id]
    # Default: the latest jobs that have produced something, up to three.
    started = [j["id"] for j in jobs if j["status"] not in ("queued", "cancelled") or j["current_step"]]
    st.session_state["compare_jobs"] = wanted or started[:3]

chosen = st.multiselect("Jobs", list(by_id), key="compare_jobs", format_func=lambda i: state.job_label(by_id[i]))
c1, c2, c3 = st.columns([2, 2, 1])
metric = c1.selectbox("Metric", METRICS, key="compare_metric")
x = c2.radio("Against", list(charts.X_AXES), key="compare_x", horizontal=True,
             format_func=charts.X_AXES.get)
smoothing = c3.slider("Smoothing", 0.0, 0.99, 0.0 if metric.startswith("eval/") else 0.6, 0.01,
                      key=f"compare_smoothing_{metric}")
if not chosen:
    st.info("Pick one or more jobs to compare.")
    st.stop()
st.query_params["jobs"] = ",".join(chosen)

X_SERIES = ("time/elapsed", "rollouts/total")
names = (metric, *X_SERIES)
runs = {}
for job_id in chosen:
    job = by_id[job_id]
    label = f"{job['estimator']} · {job_id[-6:]}"
    x_series = [s for s in state.job_metrics(job, X_SERIES, state.X_MAX_POINTS) if s["name"] != metric]
    runs[label] = [*state.job_metrics(job, (metric,)), *x_series]

frame = charts.compare_frame(runs, metric, x=x, smoothing=smoothing)
if frame.empty:
    st.info(f"None of these jobs has logged `{metric}`" +
            ("" if x == "step" else f" together with `{x}`") + " yet.")
else:
    state.show(st, charts.line_chart(frame, y_title=metric, x=x, x_title=charts.X_AXES[x],
                                      points=metric.startswith(("eval/", "value_mse/")), height=380),
                    width="stretch")
    missing = [label for label in runs if label not in set(frame["series"])]
    if missing:
        st.caption(f"Not drawn (no `{metric}`{'' if x == 'step' else ' or no x series'}): {', '.join(missing)}")

summary = []
for label, series in runs.items():
    found = charts.by_name(series)
    last = {name: next((v for v in reversed(found[name]["values"]) if v is not None), None)
            if name in found else None for name in names}
    summary.append({"job": label, f"last {metric}": last[metric],
                    "wall-clock": format_duration(last["time/elapsed"]),
                    "rollouts": None if last["rollouts/total"] is None else int(last["rollouts/total"])})
st.dataframe(pd.DataFrame(summary), hide_index=True, width="stretch")
