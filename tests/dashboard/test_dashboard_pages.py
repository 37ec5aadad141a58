"""Every dashboard page under Streamlit's AppTest, against the real API on a seeded database.

The seeded user has a finished 2,000-step BASIS job, a finished GRPO job and a failed job
(tests/dashboard/dashboard_stack.py); charts are read back from the Vega-Lite protos, so a test fails
if a chart is missing or holds the wrong data.
"""

from __future__ import annotations

import json
import re

from dashboard.state import MAX_POINTS
from tests.dashboard.dashboard_apptest import APP, STEPS, app_test, chart_with, charts


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_jobs_page_lists_jobs_with_status_progress_and_reward(stack):
    at = app_test(stack.url, stack.keys["alice"])
    assert not at.exception and not errors(at)
    table = at.dataframe[0].value
    assert set(table["id"]) == {stack.seeded.basis_job, stack.seeded.grpo_job, stack.seeded.failed_job}
    row = table.set_index("id").loc[stack.seeded.basis_job]
    assert "succeeded" in row["status"]
    assert (row["estimator"], row["model"], row["dataset"]) == ("basis", "tiny-qwen", "arithmetic")
    assert row["step"] == f"{STEPS} / {STEPS}" and row["progress"] == 1.0
    assert 0 < row["latest reward"] <= 1 and row["duration"]
    failed = table.set_index("id").loc[stack.seeded.failed_job]
    assert "failed" in failed["status"] and failed["progress"] < 1


def test_jobs_page_filters_by_status(stack):
    at = app_test(stack.url, stack.keys["alice"])
    at.selectbox(key="jobs_status").set_value("failed").run()
    assert list(at.dataframe[0].value["id"]) == [stack.seeded.failed_job]
    at.selectbox(key="jobs_status").set_value("running").run()
    assert not at.dataframe and "No running jobs." in [i.value for i in at.info]


def test_jobs_page_opens_a_job(stack):
    at = app_test(stack.url, stack.keys["alice"])
    at.selectbox(key="jobs_open").set_value(stack.seeded.grpo_job)
    at.button(key="jobs_open_button").click().run()
    assert not at.exception
    assert at.title[0].value == "Job detail"
    assert at.selectbox(key="detail_job").value == stack.seeded.grpo_job


def test_no_jobs_state(stack):
    for page in (None, "views/job_detail.py", "views/compare.py"):
        at = app_test(stack.url, stack.keys["bob"], page)
        assert not at.exception and not errors(at)
        assert any("No jobs yet" in i.value for i in at.info), page


def test_job_detail_renders_every_chart_with_the_jobs_data(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.basis_job)
    assert not at.exception and not errors(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == f"{STEPS} / {STEPS}" and "succeeded" in metrics["Status"]
    assert len(charts(at)) == 9

    reward = chart_with(at, '"reward"')["data"]
    assert set(reward["series"]) == {"reward"}
    # Downsampled by the API (max_points) but spanning the whole run.
    assert len(reward) <= MAX_POINTS and reward["step"].max() == STEPS and reward["step"].min() <= 4

    accuracy = chart_with(at, '"accuracy"')["data"]
    assert set(accuracy["series"]) == {"train (batch)", "eval (held-out)"}
    evals = accuracy[accuracy["series"] == "eval (held-out)"]
    assert evals["step"].tolist() == [0, *range(25, STEPS + 1, 25)]
    assert (evals["value"] == evals["smoothed"]).all()  # eval accuracy is never smoothed

    mse = chart_with(at, '"value-MSE"')["data"]
    assert set(mse["series"]) == {"BASIS", "REINFORCE++", "group mean (8)"}
    means = mse.groupby("series")["value"].mean()
    assert means["BASIS"] < means["group mean (8)"] < means["REINFORCE++"]
    summary = at.dataframe[0].value
    assert summary.iloc[0]["estimator"] == "BASIS" and 0.2 < summary.iloc[0]["ratio to REINFORCE++"] < 0.45

    # The whole run, merged by the API into HISTOGRAM_STEPS spans (of 4 steps here).
    slider = at.slider(key="adv_step")
    assert (slider.min, slider.max, slider.value) == (1, STEPS, STEPS)
    assert any("each histogram merges up to 4 consecutive steps" in c.value for c in at.caption)
    histogram = chart_with(at, f"advantage (steps {STEPS - 3}-{STEPS})")["data"]
    assert len(histogram) == 20 and histogram["count"].sum() == 4 * 16 * 8
    heatmap = chart_with(at, "viridis")["data"]
    assert heatmap["step_lo"].nunique() == 200 and heatmap["step_hi"].max() == STEPS + 1
    assert abs(heatmap.groupby("step_lo")["fraction"].sum() - 1).max() < 1e-9

    assert set(chart_with(at, "calibration c_t")["data"]["series"]) == {"calibration c_t"}
    assert set(chart_with(at, "active-set fraction")["data"]["series"]) == {"active-set fraction"}
    assert set(chart_with(at, '"seconds"')["data"]["series"]) == {"rollout", "reward", "update", "sync"}
    assert chart_with(at, "tokens/s")["data"]["value"].gt(0).all()

    events = at.dataframe[1].value
    assert events.iloc[0]["message"] == "status running -> succeeded"
    assert "Checkpoint at step 2000" in set(events["message"])
    assert at.dataframe[2].value["step"].tolist() == [STEPS]
    download = at.get("download_button")[0]
    assert download.proto.label == "Download .tar"


def test_job_detail_histogram_follows_the_slider(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.basis_job)
    at.slider(key="adv_step").set_value(7).run()
    histogram = chart_with(at, "advantage (steps 5-8)")["data"]
    assert histogram["count"].sum() == 4 * 16 * 8


def test_job_detail_smoothing_changes_the_smoothed_line_only(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.basis_job)
    at.slider(key="smoothing").set_value(0.0).run()
    raw = chart_with(at, '"reward"')["data"]
    assert (raw["value"] == raw["smoothed"]).all()
    at.slider(key="smoothing").set_value(0.9).run()
    smooth = chart_with(at, '"reward"')["data"]
    assert smooth["value"].tolist() == raw["value"].tolist()
    assert smooth["smoothed"].diff().abs().mean() < raw["value"].diff().abs().mean() / 2


def test_failed_job_shows_its_error(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.failed_job)
    assert not at.exception
    assert any("This job failed" in e and "CUDA out of memory" in e for e in errors(at))
    # A non-BASIS job has no BASIS internals; this one is BASIS, so they are drawn.
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.grpo_job)
    assert any("No BASIS internals" in c.value for c in at.caption)
    assert not at.get("download_button")  # no checkpoints


def test_unknown_job_is_a_clear_not_found(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job="job_doesnotexist")
    assert not at.exception
    assert any("Not found" in w.value and "job_doesnotexist" in w.value for w in at.warning)


def test_compare_overlays_jobs_against_step_time_and_rollouts(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/compare.py",
                  jobs=f"{stack.seeded.basis_job},{stack.seeded.grpo_job}")
    assert not at.exception and not errors(at)
    assert at.multiselect(key="compare_jobs").value == [stack.seeded.basis_job, stack.seeded.grpo_job]
    data = charts(at)[0]["data"]
    assert data["series"].nunique() == 2 and data["step"].max() == STEPS

    at.radio(key="compare_x").set_value("rollouts/total").run()
    data = charts(at)[0]["data"]
    by_job = data.groupby("series")["rollouts/total"].max()
    basis = next(s for s in by_job.index if s.startswith("basis"))
    grpo = next(s for s in by_job.index if s.startswith("grpo"))
    # BASIS: 16 rollouts a step plus 8 per prompt offline; GRPO: 16 x 8 a step, a quarter the steps.
    assert by_job[basis] == 8 * 40 + 16 * STEPS and by_job[grpo] == 16 * 8 * (STEPS // 4)

    at.radio(key="compare_x").set_value("time/elapsed").run()
    at.selectbox(key="compare_metric").set_value("value_mse/basis").run()
    data = charts(at)[0]["data"]
    assert data.groupby("series")["time/elapsed"].apply(lambda x: x.is_monotonic_increasing).all()
    # GRPO's 8 rollouts a step make its wall-clock per step several times BASIS's.
    per_step = data.groupby("series").apply(lambda g: g["time/elapsed"].max() / g["step"].max())
    assert per_step[grpo] > 3 * per_step[basis]
    table = at.dataframe[0].value
    assert set(table.columns) == {"job", "last value_mse/basis", "wall-clock", "rollouts"}
    assert all(re.fullmatch(r"(\d+h )?(\d+m )?\d+[sm]", t) for t in table["wall-clock"]), table


def test_new_job_submits_and_shows_api_validation_errors_by_field(stack):
    at = app_test(stack.url, stack.keys["carol"], "views/new_job.py")
    assert not at.exception and not errors(at)
    assert at.selectbox(key="new_model").options == ["tiny-qwen"]

    at.selectbox(key="new_estimator").set_value("grpo")  # needs >= 2 rollouts: the API refuses
    at.button(key="FormSubmitter:new_job-Create job").click().run()
    assert not at.exception
    refusal = errors(at)
    assert any("rollouts_per_prompt" in e for e in refusal)
    # Shown under the rollouts field too (the form field the API's `param` names).
    assert len([e for e in refusal if "rollouts_per_prompt" in e]) == 2

    at.number_input(key="new_rollouts").set_value(8)
    at.number_input(key="new_cfg.max_steps").set_value(30)
    at.button(key="FormSubmitter:new_job-Create job").click().run()
    assert not at.exception and not errors(at)
    created = at.success[0].value
    assert "created" in created
    at.switch_page("views/jobs.py").run()
    job = at.dataframe[0].value.iloc[0]
    assert job["estimator"] == "grpo" and "queued" in job["status"] and job["step"] == "0 / 30"


def test_new_job_uploads_a_dataset_and_reports_a_bad_file(stack):
    at = app_test(stack.url, stack.keys["carol"], "views/new_job.py")
    at.radio(key="new_source").set_value("Upload a JSONL file").run()
    at.file_uploader(key="new_upload").upload("bad.jsonl", b'{"prompt": "x"}\nnot json\n', "application/jsonl")
    at.button(key="FormSubmitter:new_job-Create job").click().run()
    assert not at.exception
    assert any("line" in e for e in errors(at)), errors(at)

    rows = b"".join(json.dumps({"prompt": f"{i}+1?", "answer": str(i + 1)}).encode() + b"\n"
                    for i in range(20))
    at.file_uploader(key="new_upload").set_value(("twenty.jsonl", rows, "application/jsonl"))
    at.text_input(key="new_dataset_name").set_value("twenty rows")
    at.button(key="FormSubmitter:new_job-Create job").click().run()
    assert not at.exception and not errors(at) and at.success
    at.radio(key="new_source").set_value("Pick an uploaded dataset").run()
    assert any("twenty rows" in option for option in at.selectbox(key="new_dataset").options)


def test_wrong_key_state(stack):
    for page in (None, "views/job_detail.py", "views/compare.py", "views/new_job.py"):
        at = app_test(stack.url, "bk_not-a-real-key", page)
        assert not at.exception
        assert any("Wrong or missing API key" in e for e in errors(at)), page
        assert not at.dataframe and not charts(at)


def test_unreachable_api_state(stack):
    from tests.net import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for page in (None, "views/job_detail.py", "views/compare.py", "views/new_job.py"):
        at = app_test(url, stack.keys["alice"], page)
        assert not at.exception
        assert any("API unreachable" in e and url in e for e in errors(at)), page


def test_sidebar_takes_url_and_key_from_the_environment_and_never_shows_the_key(stack, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BASIS_API_URL", stack.url)
    monkeypatch.setenv("BASIS_API_KEY", stack.keys["alice"])
    monkeypatch.delenv("BASIS_DASHBOARD_URL_EDITABLE", raising=False)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not errors(at) and len(at.dataframe[0].value) == 3  # the default key works server-side
    # Issue 18: the key never reaches the page, the URL is the server's, and the page says who
    # every visitor is.
    assert at.sidebar.text_input(key="api_key").value == ""
    assert stack.keys["alice"] not in str(at._tree)
    assert not [w for w in at.sidebar.text_input if w.key == "api_url"]
    assert any("every visitor" in w.value for w in at.sidebar.warning)
    # A visitor forging the URL in its session changes nothing: requests still go to the server's.
    at.session_state["api_url"] = "http://127.0.0.1:9"
    at.run()
    assert not errors(at) and len(at.dataframe[0].value) == 3


def test_an_admin_may_make_the_url_editable(stack, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BASIS_API_URL", stack.url)
    monkeypatch.setenv("BASIS_DASHBOARD_URL_EDITABLE", "true")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["api_key"] = stack.keys["alice"]
    at.run()
    assert at.sidebar.text_input(key="api_url").value == stack.url
    at.sidebar.text_input(key="api_url").set_value("http://127.0.0.1:9").run()
    assert any("API unreachable" in e for e in errors(at))


def test_running_job_is_live_shows_new_steps_and_can_be_cancelled(stack, running):
    import streamlit as st
    from sqlalchemy import insert, update

    from core.db import session_scope
    from core.models import Job, Metric

    key, job_id = running
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    assert not at.exception and not errors(at)
    assert any("Live: refreshing every" in c.value for c in at.caption)
    assert chart_with(at, '"reward"')["data"]["step"].max() == 50

    # The worker writes ten more steps; the next refresh (a rerun once the short TTL is over) shows them.
    with session_scope(stack.app.state.engine) as session:
        session.execute(insert(Metric), [{"job_id": job_id, "name": "reward/mean", "step": s, "value": 0.5}
                                         for s in range(51, 61)])
        session.execute(update(Job).where(Job.id == job_id).values(current_step=60))
    st.cache_data.clear()
    at.run()
    assert chart_with(at, '"reward"')["data"]["step"].max() == 60
    assert {m.label: m.value for m in at.metric}["Step"] == "60 / 100"

    at.button(key="cancel_job").click().run()
    assert not at.exception
    events = at.dataframe[1].value
    assert events.iloc[0]["kind"] == "cancel_requested"


def test_queued_job_without_any_output_renders_its_waiting_state(stack, running):
    from core.db import session_scope
    from core.models import ApiKey, Job

    key, _ = running
    with session_scope(stack.app.state.engine) as session:
        owner_id = session.query(ApiKey).filter(ApiKey.prefix == key[:11]).one().user_id
        job = Job(owner_id=owner_id, dataset_id=stack.seeded.dataset_id, model=stack.seeded.model,
                  estimator="rloo", config={"estimator": "rloo"}, status="queued", queue="gpu",
                  max_steps=10)
        session.add(job)
        session.flush()
        job_id = job.id
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    assert not at.exception and not errors(at)
    infos = " ".join(i.value for i in at.info)
    assert "waiting for a worker" in infos and "No metrics yet" in infos
    assert "No advantage histograms yet" in infos and not charts(at)  # no empty axes either
    assert {m.label: m.value for m in at.metric}["Reward"] == "–"


def test_new_job_choices_and_option_help_come_from_the_api(stack):
    """The form lists the trainer's registries through GET /v1/components, not a copy."""
    from trainer.advantages import ESTIMATORS
    from trainer.rewards import REWARDS

    at = app_test(stack.url, stack.keys["carol"], "views/new_job.py")
    assert not at.exception
    assert sorted(at.selectbox(key="new_estimator").options) == sorted(ESTIMATORS)
    assert "group_mean" in at.selectbox(key="new_estimator").options  # not in the old static list
    assert sorted(at.selectbox(key="new_reward").options) == sorted(REWARDS)
    # The options table of BASIS shows its defaults and descriptions.
    options = [df.value for df in at.dataframe]
    basis = next(t for t in options if "history_drift" in list(t["option"]))
    assert set(basis.columns) == {"option", "default", "description"}
    assert basis.set_index("option").loc["history", "default"] == "true"


def test_job_detail_samples_filter_by_step_sort_by_advantage_and_mark_unscorable(stack):
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.basis_job)
    assert not at.exception and not errors(at)
    assert at.selectbox(key="samples_step").value == STEPS  # the newest step first
    frame = next(df.value for df in at.dataframe if "completion" in getattr(df.value, "columns", []))
    frame = getattr(frame, "data", frame)  # a Styler (highlighted rows) or its frame
    assert frame["step"].tolist() == [STEPS] * 4
    assert frame["advantage"].tolist() == sorted(frame["advantage"], reverse=True)
    assert frame["unscorable"].tolist() == [False, False, False, True]
    assert any("1 unscorable" in c.value for c in at.caption)
    at.selectbox(key="samples_order").set_value("advantage, low first")
    at.selectbox(key="samples_step").set_value("all")
    at.run()
    frame = next(df.value for df in at.dataframe if "completion" in getattr(df.value, "columns", []))
    frame = getattr(frame, "data", frame)
    assert len(frame) == 8 and frame["advantage"].tolist() == sorted(frame["advantage"])


def test_new_job_defaults_are_the_apis(stack):
    """Reward, engine, estimator and every number start at GET /v1/components' defaults."""
    from core.jobs.config import default_config

    defaults = default_config()
    at = app_test(stack.url, stack.keys["carol"], "views/new_job.py")
    assert not at.exception
    assert at.selectbox(key="new_reward").value == defaults["reward"] == "math"
    assert at.selectbox(key="new_engine").value == defaults["engine"]
    assert at.selectbox(key="new_estimator").value == defaults["estimator"]
    assert at.number_input(key="new_cfg.batch_size").value == defaults["batch_size"]
    assert at.number_input(key="new_cfg.optimizer.lr").value == defaults["optimizer"]["lr"]
    assert at.number_input(key="new_cfg.sampling.max_new_tokens").value == \
        defaults["sampling"]["max_new_tokens"]


def test_job_detail_reward_is_the_jobs_tables(stack):
    """Both show the last step's reward, not a downsampled bucket's mean."""
    from client import BasisClient

    with BasisClient(stack.url, stack.keys["alice"]) as api:
        latest = api.get_job(stack.seeded.basis_job).latest_metrics["reward/mean"]
    at = app_test(stack.url, stack.keys["alice"], "views/job_detail.py", job=stack.seeded.basis_job)
    assert {m.label: m.value for m in at.metric}["Reward"] == f"{latest:.3f}"


def test_job_detail_shows_the_priors_phase_progress(stack):
    """While a job estimates its BASIS priors, Job detail shows the trainer's newest progress
    event ("estimating priors: rollouts 2880/28800 (10%) ...") as a progress bar."""
    from core.db import session_scope
    from core.jobs.events import record_event
    from core.models import Job, JobStatus, utcnow
    from core.services.keys import create_key

    with session_scope(stack.app.state.engine) as session:
        user, key = create_key(session, "gina")
        job = Job(owner_id=user.user_id, dataset_id=stack.seeded.dataset_id, model="tiny-qwen",
                  estimator="basis", config={"estimator": "basis"}, status=JobStatus.estimating_priors,
                  queue="gpu", max_steps=100, current_step=0, started_at=utcnow())
        session.add(job)
        session.flush()
        for done in (2880, 5760):
            record_event(session, job.id, "priors",
                         f"estimating priors: rollouts {done}/28800 ({done / 288:.0f}%), elapsed 12s",
                         {"done": done, "total": 28800, "progress": done / 28800})
        job_id = job.id
    at = app_test(stack.url, key, "views/job_detail.py", job=job_id)
    assert not at.exception and not errors(at)
    bars = at.get("progress")
    assert len(bars) == 1
    assert bars[0].proto.value == 20 and "5760/28800 (20%)" in bars[0].proto.text
