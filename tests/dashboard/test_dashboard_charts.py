"""The pure parts of the dashboard: smoothing, chart frames, tables, the New job form's logic."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from dashboard import charts, forms, tables


def test_ema_is_debiased_skips_gaps_and_zero_weight_is_identity():
    values = [1.0, None, 3.0, float("nan"), 5.0]
    assert np.array_equal(charts.ema(values, 0.0), [1.0, np.nan, 3.0, np.nan, 5.0], equal_nan=True)
    out = charts.ema(values, 0.5)
    assert out[0] == 1.0  # debiased: no pull towards 0 at the start
    assert np.isnan(out[1]) and np.isnan(out[3])
    # 0.5 * 1 + 0.5 * 3 over (1 - 0.25) weight: the gap did not count as a step.
    assert out[2] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)
    constant = charts.ema([2.0] * 50, 0.99)
    assert np.allclose(constant, 2.0)
    with pytest.raises(ValueError, match="smoothing weight"):
        charts.ema([1.0], 1.0)


def test_series_frame_labels_smooths_and_drops_nulls():
    series = [{"name": "reward/mean", "steps": [1, 2, 3], "values": [0.1, None, 0.3]},
              {"name": "other", "steps": [1], "values": [9.0]}]
    frame = charts.series_frame(series, ["reward/mean", "missing"], smoothing=0.5,
                                labels={"reward/mean": "reward"})
    assert frame["step"].tolist() == [1, 3] and set(frame["series"]) == {"reward"}
    assert frame["value"].tolist() == [0.1, 0.3] and frame["smoothed"].iloc[1] < 0.3
    assert charts.series_frame(series, ["missing"]).empty
    layers = charts.line_chart(frame, y_title="reward").spec["layer"]
    assert [layer["encoding"]["y"]["field"] for layer in layers] == ["value", "smoothed"]
    assert len(charts.line_chart(frame, y_title="reward", show_raw=False).spec["layer"]) == 1


def test_every_chart_spec_is_valid_vega_lite():
    """The specs skip Altair's validation at render time (it is slow), so it happens here."""
    import jsonschema
    from altair.vegalite.v6.schema.core import load_schema

    frame = charts.series_frame([{"name": "m", "steps": [1, 2], "values": [0.1, 0.2]}], smoothing=0.5)
    histogram = {"step": 1, "edges": [-1, 0, 1], "counts": [1, 2]}
    built = [charts.line_chart(frame, y_title="m", points=True, log_y=True),
             charts.line_chart(frame, y_title="m", x="rollouts/total", x_title="Rollouts"),
             charts.histogram_chart(histogram), charts.histogram_heatmap([histogram])]
    validator = jsonschema.Draft7Validator(load_schema())
    for chart in built:
        errors = [e.message[:200] for e in validator.iter_errors({**chart.spec, "data": {"values": []}})]
        assert errors == [], chart.spec
    bad = {**built[0].spec, "layer": [{"mark": "bogus"}], "data": {"values": []}}
    assert not validator.is_valid(bad)


def test_value_mse_frame_and_summary_compare_to_reinforce_pp():
    series = [{"name": "value_mse/basis", "steps": [10, 20], "values": [0.01, 0.03]},
              {"name": "value_mse/reinforce_pp", "steps": [10, 20], "values": [0.05, 0.07]},
              {"name": "value_mse/group_mean_8", "steps": [10, 20], "values": [0.02, 0.04]},
              {"name": "reward/mean", "steps": [10], "values": [0.5]}]
    frame = charts.value_mse_frame(series)
    assert set(frame["series"]) == {"BASIS", "REINFORCE++", "group mean (8)"}
    summary = charts.value_mse_summary(frame)
    assert summary["estimator"].tolist() == ["BASIS", "group mean (8)", "REINFORCE++"]
    assert summary["ratio to REINFORCE++"].tolist() == pytest.approx([1 / 3, 0.5, 1.0])


def test_histogram_frame_checks_shapes():
    frame = charts.histogram_frame({"step": 3, "edges": [-1, 0, 1], "counts": [1, 3]})
    assert frame["fraction"].tolist() == [0.25, 0.75] and frame["hi"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="step 3: 2 edges for 2 counts"):
        charts.histogram_frame({"step": 3, "edges": [-1, 1], "counts": [1, 3]})


def test_heatmap_merges_steps_into_at_most_max_columns_and_normalises():
    edges = [-1.0, 0.0, 1.0]
    hists = [{"step": s, "edges": edges, "counts": [s, 10 - s]} for s in range(1, 11)]
    hists.append({"step": 11, "edges": [-2.0, 0.0, 2.0], "counts": [1, 1]})  # foreign bins: skipped
    frame = charts.histogram_heatmap_frame(hists, max_columns=4)
    assert frame["step_lo"].nunique() == 4 and frame["step_hi"].max() == 11
    assert frame.groupby("step_lo")["fraction"].sum().tolist() == pytest.approx([1.0] * 4)
    first = frame[frame["step_lo"] == 1]  # steps 1..3 merged: counts (6, 24)
    assert first["fraction"].tolist() == pytest.approx([0.2, 0.8])
    assert charts.histogram_heatmap_frame([]).empty


def test_compare_frame_interpolates_the_x_metric_and_skips_runs_without_it():
    runs = {
        "a": [{"name": "eval/accuracy", "steps": [0, 10], "values": [0.2, 0.6]},
              {"name": "rollouts/total", "steps": [1, 5, 10], "values": [16, 80, 160]}],
        "b": [{"name": "eval/accuracy", "steps": [0, 10], "values": [0.1, 0.2]}],
    }
    frame = charts.compare_frame(runs, "eval/accuracy", x="rollouts/total")
    assert set(frame["series"]) == {"a"}
    assert frame["rollouts/total"].tolist() == [16, 160] and frame["step"].tolist() == [0, 10]
    by_step = charts.compare_frame(runs, "eval/accuracy")
    assert set(by_step["series"]) == {"a", "b"} and list(by_step.columns) == ["step", "series", "value", "smoothed"]


def test_histogram_at_finds_the_span_covering_a_step_or_the_nearest():
    hists = [{"step": 4, "step_from": 1, "step_to": 4}, {"step": 8, "step_from": 5, "step_to": 8},
             {"step": 20, "step_from": 17, "step_to": 20}]  # a gap: steps 9..16 were never logged
    assert charts.histogram_at(hists, 6)["step"] == 8 and charts.histogram_at(hists, 4)["step"] == 4
    assert charts.histogram_at(hists, 10)["step"] == 8 and charts.histogram_at(hists, 15)["step"] == 20
    assert charts.histogram_at(hists, 100)["step"] == 20
    assert charts.histogram_at([{"step": 1}, {"step": 5}, {"step": 9}], 6)["step"] == 5  # plain per-step rows
    assert [charts.histogram_label(h) for h in ({"step": 3}, hists[0])] == ["step 3", "steps 1-4"]


def test_jobs_frame_progress_duration_and_dataset_names():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    jobs = [
        {"id": "job_a", "status": "running", "estimator": "basis", "model": "m", "dataset_id": "ds_1",
         "current_step": 25, "max_steps": 100, "started_at": "2026-01-01T11:58:55Z",
         "finished_at": None, "latest_metrics": {"reward/mean": 0.4}},
        {"id": "job_b", "status": "queued", "estimator": "grpo", "model": "m", "dataset_id": None,
         "current_step": 0, "max_steps": None, "started_at": None, "finished_at": None,
         "latest_metrics": {}},
    ]
    frame = tables.jobs_frame(jobs, {"ds_1": "arith"}, now=now).set_index("id")
    assert frame.loc["job_a", "progress"] == 0.25 and frame.loc["job_a", "duration"] == "1m 05s"
    assert frame.loc["job_a", "dataset"] == "arith" and frame.loc["job_a", "latest reward"] == 0.4
    assert frame.loc["job_b", "dataset"] == "(deleted)" and frame.loc["job_b", "duration"] == ""
    assert frame.loc["job_b", "step"] == "0" and np.isnan(frame.loc["job_b", "progress"])
    assert tables.format_duration(3725) == "1h 02m" and tables.format_bytes(1536) == "1.5 KB"


def test_build_config_nests_fields_handles_lora_and_merges_advanced_json():
    values = {"estimator": "basis", "optimizer.lr": 1e-5, "sampling.temperature": 0.7,
              "lora": False, "lora.r": 8, "seed": None}
    assert forms.build_config(values) == {"estimator": "basis", "optimizer": {"lr": 1e-5},
                                          "sampling": {"temperature": 0.7}}
    with_lora = forms.build_config({**values, "lora": True},
                                   json.dumps({"optimizer": {"weight_decay": 0.1}, "lora": {"alpha": 16}}))
    assert with_lora["optimizer"] == {"lr": 1e-5, "weight_decay": 0.1}
    assert with_lora["lora"] == {"r": 8, "alpha": 16}
    with pytest.raises(ValueError, match="advanced: not valid JSON"):
        forms.build_config(values, "{nope")
    with pytest.raises(ValueError, match="advanced: must be a JSON object"):
        forms.build_config(values, "[1]")


@pytest.mark.parametrize(("param", "message", "field"), [
    ("config.optimizer.lr", "invalid config: optimizer.lr: must be > 0", "optimizer.lr"),
    ("config.lora.r", "...", "lora.r"),
    ("config.sampling.top_p", "...", forms.ADVANCED),  # not on the form: the advanced box
    ("config.rollouts_per_prompt", "...", "rollouts_per_prompt"),
    ("config", "invalid config: config: Value error, rollouts_per_prompt: estimator 'grpo' needs",
     "rollouts_per_prompt"),
    ("dataset_id", "no dataset", "dataset"), ("file", "line 2: not JSON", "dataset"),
    ("model", "no model", "model"), (None, "boom", None),
])
def test_error_field_maps_api_params_to_form_fields(param, message, field):
    assert forms.error_field(param, message) == field


def test_heatmap_columns_span_the_steps_the_api_merged():
    edges = [-1.0, 0.0, 1.0]
    hists = [{"step": 4 * k + 4, "step_from": 4 * k + 1, "step_to": 4 * k + 4, "edges": edges,
              "counts": [k, 1]} for k in range(10)]  # steps 1..40 in spans of 4
    frame = charts.histogram_heatmap_frame(hists, max_columns=5)
    assert sorted(set(zip(frame["step_lo"], frame["step_hi"], strict=True))) == [
        (1, 9), (9, 17), (17, 25), (25, 33), (33, 41)]
    assert frame[frame["step_lo"] == 1]["fraction"].tolist() == pytest.approx([1 / 3, 2 / 3])  # (0+1, 1+1)
    title = charts.histogram_chart(hists[-1]).spec["encoding"]["x"]["title"]
    assert title == "advantage (steps 37-40)"
