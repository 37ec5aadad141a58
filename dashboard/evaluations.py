"""Evaluations page, pure part: API payloads (GET /v1/evals, /v1/evals/{id}/samples) -> the list
table, the side-by-side comparison of several models on one dataset, and one row's completions per
model. No Streamlit, no IO: the frames are what the page draws and what the tests read.

Choices:
- Models are compared on one dataset at a time: figures over different prompts do not compare.
  Nor do figures measured differently (another reward, k, temperature, length or row count): the
  default pick is the newest evaluation of each model on that dataset among those run with the
  same settings, the settings most models share (the newest on a tie), so "base vs fine-tuned" is
  one click away whatever order they ran in, and a pick that mixes settings is flagged
  (`differences`).
- A column is labelled with the model name, and the evaluation id's tail when a model appears more
  than once (two temperatures, say), so columns never collide.
- pass@k rows are the union of the evaluations' k; an evaluation with fewer samples per prompt shows
  none for the k it cannot estimate rather than a number it did not measure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from dashboard.charts import Chart
from dashboard.tables import parse_time, progress

LIST_COLUMNS = ["id", "status", "model", "dataset", "rows", "k", "accuracy", "pass@k", "tokens",
                "unscorable", "progress", "created"]


def _results(evaluation: Mapping[str, Any]) -> Mapping[str, Any]:
    return evaluation.get("results") or {}


def best_pass(results: Mapping[str, Any]) -> float | None:
    """pass@k at the largest k measured (pass@n), or None."""
    passes = results.get("pass_at_k") or {}
    return passes[max(passes, key=int)] if passes else None


def evals_frame(evals: Iterable[Mapping[str, Any]],
                dataset_names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per evaluation, newest first as the API lists them."""
    names = dataset_names or {}
    rows = []
    for e in evals:
        r = _results(e)
        dataset_id = e.get("dataset_id")
        rows.append({
            "id": e["id"], "status": e["status"], "model": e["model"],
            "dataset": names.get(dataset_id, dataset_id) if dataset_id else "(deleted)",
            "rows": r.get("rows"), "k": (e.get("config") or {}).get("samples_per_prompt"),
            "accuracy": r.get("accuracy"), "pass@k": best_pass(r),
            "tokens": r.get("mean_response_tokens"), "unscorable": r.get("unscorable_frac"),
            "progress": progress(e), "created": parse_time(e.get("created_at")),
        })
    return pd.DataFrame(rows, columns=LIST_COLUMNS)


def datasets_evaluated(evals: Iterable[Mapping[str, Any]]) -> list[str]:
    """Dataset ids with at least one evaluation that has results, most recently evaluated first."""
    seen: dict[str, None] = {}
    for e in evals:
        if e.get("dataset_id") and e.get("results"):
            seen.setdefault(e["dataset_id"], None)
    return list(seen)


# The settings that change what an evaluation's figures measure: (config field, label).
SETTINGS = (("reward", "reward"), ("samples_per_prompt", "samples per prompt"),
            ("temperature", "temperature"), ("max_new_tokens", "max new tokens"),
            ("max_rows", "max rows"))


def _settings(evaluation: Mapping[str, Any]) -> tuple[Any, ...]:
    config = evaluation.get("config") or {}
    return tuple(config.get(field) for field, _ in SETTINGS)


def default_pick(evals: Iterable[Mapping[str, Any]], dataset_id: str, limit: int = 4) -> list[str]:
    """The newest evaluation with results of each model on `dataset_id` (at most `limit` models),
    among those run with the settings the most models share (module docstring)."""
    groups: dict[tuple[Any, ...], dict[str, str]] = {}
    for e in evals:  # newest first, so each group's first entry per model is its newest
        if e.get("dataset_id") == dataset_id and e.get("results"):
            groups.setdefault(_settings(e), {}).setdefault(e["model"], e["id"])
    if not groups:
        return []
    most = max(groups.values(), key=len)  # the first (newest) group of the largest size
    return list(most.values())[:limit]


def differences(evals: Sequence[Mapping[str, Any]]) -> list[str]:
    """One phrase per setting the evaluations do not share, e.g. "reward (exact, math)"."""
    out = []
    for field, label in SETTINGS:
        values = list(dict.fromkeys((e.get("config") or {}).get(field) for e in evals))
        if len(values) > 1:
            shown = ["all" if v is None and field == "max_rows" else str(v) for v in values]
            out.append(f"{label} ({', '.join(shown)})")
    return out


def labels(evals: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """eval id -> column label: the model, with the id's tail where a model repeats."""
    counts: dict[str, int] = {}
    for e in evals:
        counts[e["model"]] = counts.get(e["model"], 0) + 1
    return {e["id"]: e["model"] if counts[e["model"]] == 1 else f"{e['model']} · {e['id'][-6:]}"
            for e in evals}


def comparison_frame(evals: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Figures as rows, one column per evaluation (side by side)."""
    names = labels(evals)
    ks = sorted({int(k) for e in evals for k in (_results(e).get("pass_at_k") or {})})
    index = ["accuracy", "mean reward", *(f"pass@{k}" for k in ks), "response tokens (mean)",
             "unscorable", "rows", "samples per prompt", "temperature"]
    columns = {}
    for e in evals:
        r, config = _results(e), e.get("config") or {}
        passes = r.get("pass_at_k") or {}
        columns[names[e["id"]]] = [
            r.get("accuracy"), r.get("mean_reward"), *(passes.get(str(k)) for k in ks),
            r.get("mean_response_tokens"), r.get("unscorable_frac"), r.get("rows"),
            r.get("samples_per_prompt"), config.get("temperature")]
    return pd.DataFrame(columns, index=index, dtype=float)


def comparison_chart_frame(evals: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long frame (model, figure, value) of accuracy and every pass@k, for the grouped bars."""
    names = labels(evals)
    rows = []
    for e in evals:
        r = _results(e)
        if r.get("accuracy") is not None:
            rows.append({"model": names[e["id"]], "figure": "accuracy", "value": r["accuracy"]})
        for k, value in sorted((r.get("pass_at_k") or {}).items(), key=lambda item: int(item[0])):
            if value is not None:
                rows.append({"model": names[e["id"]], "figure": f"pass@{k}", "value": value})
    return pd.DataFrame(rows, columns=["model", "figure", "value"])


def comparison_chart(evals: Sequence[Mapping[str, Any]], *, height: int = 300) -> Chart:
    """Grouped bars: accuracy and pass@k of each model, side by side."""
    frame = comparison_chart_frame(evals)
    return Chart({
        "height": height,
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "x": {"field": "figure", "type": "nominal", "title": None, "sort": None,
                  "axis": {"labelAngle": 0}},
            "xOffset": {"field": "model", "type": "nominal"},
            "y": {"field": "value", "type": "quantitative", "title": "fraction correct",
                  "scale": {"domain": [0, 1]}},
            "color": {"field": "model", "type": "nominal", "title": None,
                      "legend": {"orient": "bottom"}},
        },
    }, frame)


def row_samples(samples_by_eval: Mapping[str, Sequence[Mapping[str, Any]]],
                row: int) -> tuple[str | None, str | None, pd.DataFrame]:
    """(prompt, answer, frame) for dataset row `row`: one frame row per sample number, a
    completion and a reward column per evaluation (keys of `samples_by_eval` are the labels)."""
    prompt = answer = None
    table: dict[int, dict[str, Any]] = {}
    for label, samples in samples_by_eval.items():
        for s in samples:
            if s["row"] != row:
                continue
            prompt, answer = prompt or s["prompt"], answer or s["answer"]
            cell = table.setdefault(s["sample"], {"sample": s["sample"]})
            cell[f"{label}"] = s["completion"]
            cell[f"{label} reward"] = s["reward"]
    columns = ["sample", *(c for label in samples_by_eval for c in (label, f"{label} reward"))]
    return prompt, answer, pd.DataFrame([table[j] for j in sorted(table)], columns=columns)
