"""Job detail: is this run healthy, and is BASIS earning its keep? Refreshes live while it runs.

Everything below the job picker is one `st.fragment`, re-run every few seconds while the job is
active (and only then), so a live job costs a handful of cached requests per refresh and a finished
one none. All metric series come from a single downsampled request (`max_points`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from client import ApiError, ApiUnreachable, Unauthorized
from core.status import ACTIVE, RETRYABLE
from dashboard import charts, samples, state
from dashboard.tables import (
    duration_seconds,
    events_frame,
    format_bytes,
    format_duration,
)

REWARD = ["reward/mean"]
THROUGHPUT_TIMES = ["time/rollout", "time/reward", "time/update", "time/sync"]
BASIS_INTERNALS = [("basis/c", "calibration c_t"), ("basis/active_frac", "active-set fraction")]


def _request(action: str, job_id: str) -> None:
    """Retry/Delete button callback: it runs before the rerun, with the job the page showed, so the
    API's answer (a 409 when the job changed meanwhile) is what the user sees, not a vanished button."""
    api = state.client()
    try:
        (api.retry_job if action == "retry" else api.delete_job)(job_id)
    except ApiError as exc:
        st.session_state["job_action"] = (action, job_id, exc)
    else:
        st.session_state["job_action"] = (action, job_id, None)
    state.clear_caches()


def after_action() -> None:
    """Act on the outcome of a Retry/Delete click: go back to Jobs after a delete, reload the page
    after a retry (it refreshes live now), or say why the API refused."""
    outcome = st.session_state.pop("job_action", None)
    if outcome is None:
        return
    action, done_id, exc = outcome
    if exc is None and action == "delete":
        for name in ("job_id", "detail_job"):
            st.session_state.pop(name, None)
        st.session_state["jobs_notice"] = f"Deleted job {done_id} and everything it wrote."
        st.switch_page("views/jobs.py")
    if exc is None:
        st.session_state["job_notice"] = ("Job queued again: it resumes from its newest checkpoint "
                                          "when a worker picks it up.")
        st.rerun()
    if isinstance(exc, ApiUnreachable | Unauthorized):
        state.stop_on_error(exc)
    st.error(f"**Could not {action} this job.** {exc.message}", icon=":material/error:")


st.title("Job detail")
url, key = state.connection()
after_action()  # a click's outcome, before reading the job (a deleted one is 404 now)
jobs = state.call(state.fetch_jobs, url, key)
wanted = st.query_params.get("job") or st.session_state.get("job_id")
if not jobs and not wanted:
    st.info("No jobs yet. Start one on the New job page.", icon=":material/info:")
    st.page_link("views/new_job.py", label="New job", icon=":material/add_circle:")
    st.stop()

labels = {job["id"]: state.job_label(job) for job in jobs}
wanted = wanted or jobs[0]["id"]
options = list(labels) if wanted in labels else [wanted, *labels]
if st.session_state.get("detail_job") != wanted:
    st.session_state["detail_job"] = wanted


def _follow_picker() -> None:
    st.session_state["job_id"] = st.session_state["detail_job"]
    st.query_params["job"] = st.session_state["detail_job"]


st.selectbox("Job", options, key="detail_job", format_func=lambda i: labels.get(i, i),
             on_change=_follow_picker)
job_id = st.session_state["detail_job"]
first = state.call(state.fetch_job, url, key, job_id)


def last_value(series: Mapping[str, Any] | None) -> float | None:
    """The last non-null value of a series."""
    if not series:
        return None
    values = [v for v in series["values"] if v is not None]
    return values[-1] if values else None


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def priors_progress(events: list[dict]) -> dict | None:
    """The newest progress event of the priors phase ("estimating priors: rollouts 2880/28800
    (10%) ..."), if any."""
    found = [e for e in events if e["kind"] == "priors" and "progress" in (e.get("data") or {})]
    return max(found, key=lambda e: e["id"]) if found else None


def header(job: dict, found: Mapping[str, Mapping[str, Any]]) -> None:
    """Status line, headline numbers, and the job's error or waiting state."""
    cols = st.columns([1.5, 1.5, 1, 1, 1, 1.2])
    cols[0].metric("Status", job["status"])
    cols[1].metric("Step", f"{job['current_step']}" + (f" / {job['max_steps']}" if job["max_steps"] else ""))
    # The last step's exact values (what the Jobs table shows), not the downsampled series' last
    # point, which averages the final bucket of steps.
    latest = job.get("latest_metrics") or {}

    def newest(name: str) -> float | None:
        value = latest.get(name)
        return value if value is not None else last_value(found.get(name))

    cols[2].metric("Reward", fmt(newest("reward/mean")))
    cols[3].metric("Train accuracy", fmt(newest("reward/accuracy")))
    cols[4].metric("Eval accuracy", fmt(newest("eval/accuracy")))
    cols[5].metric("Duration", format_duration(duration_seconds(job)) or "–")
    st.caption(f"Estimator **{job['estimator']}** · model **{job['model']}** · dataset "
               f"`{job['dataset_id'] or '(deleted)'}` · created {job['created_at']}"
               + (f" · fine-tuned model **{job['fine_tuned_model']}**" if job.get("fine_tuned_model") else ""))
    if job["status"] == "failed":
        st.error(f"**This job failed.** {job.get('error') or 'No error message was recorded.'}",
                 icon=":material/error:")
    elif job["status"] == "cancelled":
        st.warning("This job was cancelled.", icon=":material/stop_circle:")
    elif job["status"] == "queued":
        st.info("Queued: waiting for a worker to pick it up.", icon=":material/hourglass_top:")
    elif job["status"] == "estimating_priors":
        st.info("Estimating BASIS priors (offline rollouts) before the first step.", icon=":material/calculate:")
        events = state.call(state.fetch_events, url, key, job["id"])
        if latest := priors_progress(events):
            st.progress(min(1.0, float(latest["data"]["progress"])), text=latest["message"])
    actions(job)


def actions(job: dict) -> None:
    """Cancel (active jobs), Retry (failed or cancelled), Delete (finished, after a confirmation)."""
    if notice := st.session_state.pop("job_notice", None):
        st.success(notice, icon=":material/check_circle:")
    if job["status"] in ACTIVE:
        if st.button("Cancel job", key="cancel_job", icon=":material/stop_circle:"):
            state.call(state.client().cancel_job, job["id"])
            state.clear_caches()
            st.rerun()
        return
    left, middle, right = st.columns([1, 3, 1.2], vertical_alignment="center")
    if job["status"] in RETRYABLE:
        left.button("Retry", key="retry_job", icon=":material/replay:", type="primary",
                    on_click=_request, args=("retry", job["id"]),
                    help="Queue this job again; the worker resumes it from its newest checkpoint.")
    sure = middle.checkbox("Delete this job with its metrics, events and checkpoints (cannot be undone)",
                           key=f"confirm_delete_{job['id']}")
    right.button("Delete job", key="delete_job", icon=":material/delete:", disabled=not sure,
                 on_click=_request, args=("delete", job["id"]))


def rewards_section(series: list[dict], smoothing: float, show_raw: bool) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown("**Reward** (mean per step)")
        frame = charts.series_frame(series, REWARD, smoothing=smoothing, labels={"reward/mean": "reward"})
        state.show(st, charts.line_chart(frame, y_title="reward", show_raw=show_raw), width="stretch")
    with right:
        st.markdown("**Accuracy**: training batch, and held-out eval")
        train = charts.series_frame(series, ["reward/accuracy"], smoothing=smoothing,
                                    labels={"reward/accuracy": "train (batch)"})
        # Eval points are sparse and each is already an average over the eval set: never smoothed.
        evals = charts.series_frame(series, ["eval/accuracy"], labels={"eval/accuracy": "eval (held-out)"})
        frame = pd.concat([train, evals], ignore_index=True)
        state.show(st, charts.line_chart(frame, y_title="accuracy", show_raw=show_raw, points=len(evals) < 60),
                        width="stretch")


def value_mse_section(series: list[dict], smoothing: float) -> None:
    frame = charts.value_mse_frame(series, smoothing=smoothing)
    if frame.empty:
        st.info("No value-MSE yet: the probe logs it on probe steps (set `probe_every` > 0).")
        return
    left, right = st.columns([3, 1])
    state.show(left, charts.line_chart(frame, y_title="value-MSE", points=True),
                      width="stretch")
    with right:
        st.markdown("**Mean over probe steps**")
        st.dataframe(charts.value_mse_summary(frame), hide_index=True, width="stretch",
                     column_config={"mean value-MSE": st.column_config.NumberColumn(format="%.4f"),
                                    "ratio to REINFORCE++": st.column_config.NumberColumn(format="%.2f")})


def advantages_section(job: dict) -> None:
    histograms = state.job_advantages(job)
    if not histograms:
        st.info("No advantage histograms yet.")
        return
    spans = [charts.histogram_span(h) for h in histograms]
    first, last = min(lo for lo, _ in spans), max(hi for _, hi in spans)
    widest = max(hi - lo + 1 for lo, hi in spans)
    if widest > 1:
        st.caption(f"Steps {first:,}-{last:,}; each histogram merges up to {widest:,} consecutive steps.")
    left, right = st.columns(2)
    with left:
        chosen = last
        if first < last:
            chosen = st.slider("Step", first, last, last, key="adv_step")
        state.show(st, charts.histogram_chart(charts.histogram_at(histograms, chosen)), width="stretch")
    with right:
        st.markdown("**Over time** (fraction of the batch per advantage bin)")
        state.show(st, charts.histogram_heatmap(histograms), width="stretch")


def basis_section(series: list[dict], smoothing: float, estimator: str) -> None:
    found = charts.by_name(series)
    if not any(name in found for name, _ in BASIS_INTERNALS):
        st.caption(f"No BASIS internals: this job uses `{estimator}`.")
        return
    for col, (name, label) in zip(st.columns(2), BASIS_INTERNALS, strict=True):
        with col:
            st.markdown(f"**{label}** (`{name}`)")
            frame = charts.series_frame(series, [name], smoothing=smoothing, labels={name: label})
            state.show(st, charts.line_chart(frame, y_title=label), width="stretch")


def throughput_section(series: list[dict], smoothing: float) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown("**Seconds per step**, by phase")
        frame = charts.series_frame(series, THROUGHPUT_TIMES, smoothing=smoothing,
                                    labels={n: n.removeprefix("time/") for n in THROUGHPUT_TIMES})
        state.show(st, charts.line_chart(frame, y_title="seconds", show_raw=False), width="stretch")
    with right:
        st.markdown("**Tokens per second**")
        frame = charts.series_frame(series, ["throughput/tokens_per_s"], smoothing=smoothing,
                                    labels={"throughput/tokens_per_s": "tokens/s"})
        state.show(st, charts.line_chart(frame, y_title="tokens/s", show_raw=False), width="stretch")


def samples_section(job: dict) -> None:
    """A few rollouts of each step: what the model wrote, its reward and advantage."""
    rows = state.call(state.fetch_samples, url, key, job["id"])
    if not rows:
        st.caption("No samples yet: each training step keeps a few rollouts (`samples_per_step`).")
        return
    steps = samples.sample_steps(rows)
    c1, c2, c3 = st.columns([1, 1, 2])
    step = c1.selectbox("Step", ["all", *steps], index=1, key="samples_step")
    order = c2.selectbox("Sort", ["advantage, high first", "advantage, low first", "batch order"],
                         key="samples_order")
    frame = samples.samples_frame(rows, step if isinstance(step, int) else None, order)  # or "all"
    unscorable = int(frame["unscorable"].sum())
    c3.caption(f"{len(frame)} samples; {unscorable} unscorable (highlighted: the reward found no "
               "answer it could score)" if unscorable else f"{len(frame)} samples, all scored")
    st.dataframe(samples.highlight_unscorable(frame), hide_index=True, width="stretch", height=300,
                 column_config={"completion": st.column_config.TextColumn(width="large"),
                                "prompt": st.column_config.TextColumn(width="medium")})


def events_and_checkpoints(job: dict) -> None:
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Events** (newest first)")
        events = state.call(state.fetch_events, url, key, job["id"])
        st.dataframe(events_frame(events), hide_index=True, width="stretch", height=260,
                     column_config={"time": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
    with right:
        st.markdown("**Checkpoints**")
        checkpoints = state.call(state.fetch_checkpoints, url, key, job["id"])
        if not checkpoints:
            st.caption("No checkpoints yet.")
            return
        st.dataframe(pd.DataFrame([{"step": c["step"], "size": format_bytes(c.get("bytes")),
                                    "created": c.get("created_at"), "id": c["id"]} for c in checkpoints]),
                     hide_index=True, width="stretch", height=180)
        by_id = {c["id"]: c for c in checkpoints}
        chosen = st.selectbox("Checkpoint", list(by_id)[::-1], key="ckpt_pick",
                              format_func=lambda i: f"step {by_id[i]['step']} ({i})")
        api = state.client()
        st.download_button(
            "Download .tar", key="ckpt_download", icon=":material/download:", mime="application/x-tar",
            file_name=f"{job['id']}-step-{by_id[chosen]['step']:06d}.tar", on_click="ignore",
            # A callable: the archive is fetched when the button is clicked, not on every rerun.
            data=lambda: api.checkpoint_content(job["id"], chosen),
        )


@st.fragment(run_every=state.REFRESH_SECONDS if first["status"] in ACTIVE else None)
def live() -> None:
    after_action()  # the same, when the click reran only this fragment
    job = state.call(state.fetch_job, url, key, job_id)
    if first["status"] in ACTIVE and job["status"] not in ACTIVE:
        st.rerun()  # finished since the page loaded: re-render once without the refresh timer
    state.prefetch(job)
    series = state.job_metrics(job)
    header(job, charts.by_name(series))
    if job["status"] in ACTIVE:
        st.caption(f"Live: refreshing every {state.REFRESH_SECONDS} s.")
    if not series:
        if job["status"] != "failed":
            st.info("No metrics yet: they appear after the first training step.")
    else:
        c1, c2, _ = st.columns([2, 1, 3])
        smoothing = c1.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="smoothing",
                              help="Exponential moving average weight (as TensorBoard's).")
        show_raw = c2.toggle("Raw values", True, key="show_raw")
        st.subheader("Reward and accuracy")
        rewards_section(series, smoothing, show_raw)
        st.subheader("Value-MSE by estimator (probe, bias-corrected)")
        value_mse_section(series, smoothing)
    st.subheader("Advantage distributions")
    advantages_section(job)
    if series:
        st.subheader("BASIS internals")
        basis_section(series, smoothing, job["estimator"])
        st.subheader("Throughput")
        throughput_section(series, smoothing)
    st.subheader("Events and checkpoints")
    events_and_checkpoints(job)
    st.subheader("Samples")
    samples_section(job)
    with st.expander("Config"):
        st.json(job["config"], expanded=False)


live()
