"""Pure functions from API payloads to data frames and Vega-Lite charts (no Streamlit, no IO).

Choices:
- Charts are Vega-Lite specs written as dicts (`Chart(spec, data)`, drawn with
  `st.vega_lite_chart`), the grammar Altair emits, without Altair itself: Altair validates every
  spec against the JSON schema and deep-copies layers on each render, which cost ~60 % of a Job
  detail render (9 charts) in profiles; the dicts cost nothing and read as plainly.
- Smoothing is TensorBoard's debiased exponential moving average (`ema`): one weight in [0, 1)
  that users already know, no lag at the start of a run, and gaps (null values) are skipped rather
  than treated as zeros.
- Every chart is built from a long data frame (`step`, `series`, `value`, ...) so the same frame
  feeds a chart and a test; the frames are the testable part, the Altair specs are thin.
- Advantage histograms come from the API already merged over consecutive steps (`step_from` ..
  `step_to`, at most a few hundred per run); over time they are drawn as a heatmap of fractions,
  merged further into at most `max_columns` columns (counts summed) so it stays a few thousand
  rectangles.
- Comparing jobs against wall-clock or rollouts maps each point's step onto the x metric by linear
  interpolation, because a sparse series (eval accuracy) and the x series are logged, and
  downsampled, at different steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

VALUE_MSE_PREFIX = "value_mse/"
ESTIMATOR_LABELS = {"basis": "BASIS", "reinforce_pp": "REINFORCE++", "grpo": "GRPO",
                    "dr_grpo": "Dr. GRPO", "rloo": "RLOO"}
X_AXES = {"step": "Step", "time/elapsed": "Wall-clock (s)", "rollouts/total": "Rollouts generated"}
LEGEND = {"orient": "bottom", "title": None, "symbolOpacity": 1, "symbolStrokeWidth": 3}


@dataclass(frozen=True)
class Chart:
    """A Vega-Lite spec (without data) and the frame it draws: `st.vega_lite_chart(data, spec)`."""

    spec: dict[str, Any]
    data: pd.DataFrame


def ema(values: Sequence[float | None], weight: float) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard's smoothing slider.

    values: (n,) floats, None/NaN for gaps; weight in [0, 1) (0 = no smoothing).
    Returns (n,) float64; a gap stays NaN and does not move the average.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    x = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    out = np.full_like(x, np.nan)
    last, debias, seen = 0.0, 0.0, False
    for i, v in enumerate(x):
        if not np.isfinite(v):
            continue
        last = weight * last + (1.0 - weight) * v
        debias = weight * debias + (1.0 - weight)
        out[i] = last / debias
        seen = True
    return out if seen else x


def estimator_label(name: str) -> str:
    """Human label of a metric-name suffix: `basis` -> BASIS, `group_mean_8` -> group mean (8)."""
    if name.startswith("group_mean_"):
        return f"group mean ({name.removeprefix('group_mean_')})"
    return ESTIMATOR_LABELS.get(name, name)


def by_name(series: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """{name: series} from the metrics endpoint's list."""
    return {s["name"]: s for s in series}


def series_frame(series: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None, *,
                 smoothing: float = 0.0, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Long frame `step, series, value, smoothed` of the chosen metric series (all when None).

    `labels` renames series for the legend; values that are null (non-finite) are dropped after
    smoothing so lines show gaps honestly.
    """
    found = by_name(series)
    frames = []
    for name in names if names is not None else sorted(found):
        if name not in found:
            continue
        s = found[name]
        frame = pd.DataFrame({"step": np.asarray(s["steps"], dtype=np.int64),
                              "value": np.asarray([np.nan if v is None else v for v in s["values"]],
                                                  dtype=np.float64)})
        frame["smoothed"] = ema(frame["value"].tolist(), smoothing) if smoothing else frame["value"]
        frame["series"] = (labels or {}).get(name, name)
        frames.append(frame.dropna(subset=["value"]))
    if not frames:
        return pd.DataFrame({"step": [], "series": [], "value": [], "smoothed": []})
    return pd.concat(frames, ignore_index=True)[["step", "series", "value", "smoothed"]]


def line_chart(frame: pd.DataFrame, *, y_title: str, x: str = "step", x_title: str = "Step",
               show_raw: bool = True, height: int = 260, log_y: bool = False,
               points: bool = False) -> Chart:
    """Smoothed lines per `series`, with the raw values faint behind them when `show_raw`.

    Scroll zooms and drag pans the x axis (an interval selection bound to the scales).
    """
    scale = {"type": "log"} if log_y else {"zero": False}
    x_enc = {"field": x, "type": "quantitative", "title": x_title}
    color = {"field": "series", "type": "nominal", "scale": {"scheme": "tableau10"}, "legend": LEGEND}
    tooltip = [{"field": "series", "type": "nominal"},
               {"field": x, "type": "quantitative", "title": x_title},
               {"field": "value", "type": "quantitative", "format": ".4g"},
               {"field": "smoothed", "type": "quantitative", "format": ".4g"}]
    smooth = {"mark": {"type": "line", "point": points},
              "encoding": {"x": x_enc, "color": color, "tooltip": tooltip,
                           "y": {"field": "smoothed", "type": "quantitative", "title": y_title,
                                 "scale": scale}},
              "params": [{"name": "zoom", "select": {"type": "interval", "encodings": ["x"]},
                          "bind": "scales"}]}
    layers = [smooth]
    if show_raw and not frame.empty and not frame["value"].equals(frame["smoothed"]):
        layers.insert(0, {"mark": {"type": "line", "opacity": 0.25},
                          "encoding": {"x": x_enc, "color": color,
                                       "y": {"field": "value", "type": "quantitative", "scale": scale}}})
    return Chart({"height": height, "layer": layers}, frame)


def value_mse_frame(series: Iterable[Mapping[str, Any]], *, smoothing: float = 0.0) -> pd.DataFrame:
    """Long frame of every `value_mse/<estimator>` series, labelled by estimator."""
    names = sorted(s["name"] for s in series if s["name"].startswith(VALUE_MSE_PREFIX))
    labels = {n: estimator_label(n.removeprefix(VALUE_MSE_PREFIX)) for n in names}
    return series_frame(series, names, smoothing=smoothing, labels=labels)


def value_mse_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean value-MSE per estimator and its ratio to REINFORCE++ (the paper's comparison)."""
    if frame.empty:
        return pd.DataFrame({"estimator": [], "mean value-MSE": [], "ratio to REINFORCE++": []})
    means = frame.groupby("series")["value"].mean()
    reference = means.get(ESTIMATOR_LABELS["reinforce_pp"])
    ratio = means / reference if reference else means * np.nan
    return (pd.DataFrame({"estimator": means.index, "mean value-MSE": means.values,
                          "ratio to REINFORCE++": ratio.values})
            .sort_values("mean value-MSE").reset_index(drop=True))


def histogram_frame(histogram: Mapping[str, Any]) -> pd.DataFrame:
    """One histogram as bars: `lo, hi, count, fraction` per bin (edges (bins+1,), counts (bins,))."""
    edges = np.asarray(histogram["edges"], dtype=np.float64)
    counts = np.asarray(histogram["counts"], dtype=np.float64)
    if edges.shape != (counts.size + 1,):
        raise ValueError(f"histogram at step {histogram.get('step')}: {edges.size} edges "
                         f"for {counts.size} counts")
    total = counts.sum()
    return pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": counts,
                         "fraction": counts / total if total else counts})


def histogram_span(histogram: Mapping[str, Any]) -> tuple[int, int]:
    """(first, last) step a histogram covers; one step when the API did not merge any."""
    return histogram.get("step_from", histogram["step"]), histogram.get("step_to", histogram["step"])


def histogram_label(histogram: Mapping[str, Any]) -> str:
    first, last = histogram_span(histogram)
    return f"step {last}" if first == last else f"steps {first}-{last}"


def histogram_at(histograms: Sequence[Mapping[str, Any]], step: int) -> Mapping[str, Any]:
    """The histogram (of a non-empty list) covering `step`, else the nearest (the earlier on a tie)."""
    def distance(histogram: Mapping[str, Any]) -> int:
        first, last = histogram_span(histogram)
        return max(first - step, step - last, 0)

    return min(sorted(histograms, key=lambda h: h["step"]), key=distance)


def histogram_chart(histogram: Mapping[str, Any], *, height: int = 260) -> Chart:
    """Bar chart of one histogram's advantage distribution (one step, or several merged)."""
    frame = histogram_frame(histogram)
    return Chart({
        "height": height,
        "mark": {"type": "rect", "stroke": "white", "strokeWidth": 0.5},
        "encoding": {
            "x": {"field": "lo", "type": "quantitative", "title": f"advantage ({histogram_label(histogram)})"},
            "x2": {"field": "hi"},
            "y": {"field": "count", "type": "quantitative", "title": "samples"},
            "y2": {"datum": 0},
            "tooltip": [{"field": "lo", "type": "quantitative", "format": ".3f"},
                        {"field": "hi", "type": "quantitative", "format": ".3f"},
                        {"field": "count", "type": "quantitative"},
                        {"field": "fraction", "type": "quantitative", "format": ".1%"}],
        },
    }, frame)


def histogram_heatmap_frame(histograms: Sequence[Mapping[str, Any]], *,
                            max_columns: int = 200) -> pd.DataFrame:
    """Heatmap cells `step_lo, step_hi, lo, hi, fraction` from histograms (each one step or a span).

    Histograms are merged into at most `max_columns` consecutive groups (counts summed, then each
    group normalised to fractions); a column runs from its first step to after its last. Histograms
    whose bins differ from the first one's are skipped: the trainer uses fixed edges, so that only
    happens with foreign data.
    """
    columns = ["step_lo", "step_hi", "lo", "hi", "fraction"]
    if not histograms:
        return pd.DataFrame({c: [] for c in columns})
    ordered = sorted(histograms, key=lambda h: h["step"])
    edges = list(ordered[0]["edges"])
    kept = [h for h in ordered if h["edges"] == edges]  # list equality: exact, and cheap
    spans = np.asarray([histogram_span(h) for h in kept], dtype=np.int64)  # (T, 2) first, last step
    counts = np.asarray([h["counts"] for h in kept], dtype=np.float64)  # (T, bins)
    n_groups = min(max_columns, len(kept))
    starts = np.asarray([idx[0] for idx in np.array_split(np.arange(len(kept)), n_groups)])  # (G,)
    ends = np.append(starts[1:], len(kept)) - 1  # (G,) index of each group's last histogram
    summed = np.add.reduceat(counts, starts, axis=0)  # (G, bins)
    totals = summed.sum(axis=1, keepdims=True)  # (G, 1)
    fraction = np.divide(summed, totals, out=np.zeros_like(summed), where=totals > 0)
    bins = counts.shape[1]
    edge = np.asarray(edges, dtype=np.float64)
    return pd.DataFrame({
        "step_lo": np.repeat(spans[starts, 0], bins), "step_hi": np.repeat(spans[ends, 1] + 1, bins),
        "lo": np.tile(edge[:-1], n_groups), "hi": np.tile(edge[1:], n_groups),
        "fraction": fraction.ravel(),
    })


def histogram_heatmap(histograms: Sequence[Mapping[str, Any]], *, max_columns: int = 200,
                      height: int = 260) -> Chart:
    """Advantage distribution over steps: x step, y advantage, colour the fraction of samples."""
    frame = histogram_heatmap_frame(histograms, max_columns=max_columns)
    return Chart({
        "height": height,
        "mark": {"type": "rect"},
        "encoding": {
            "x": {"field": "step_lo", "type": "quantitative", "title": "Step"},
            "x2": {"field": "step_hi"},
            "y": {"field": "lo", "type": "quantitative", "title": "advantage"},
            "y2": {"field": "hi"},
            "color": {"field": "fraction", "type": "quantitative", "title": "fraction",
                      "scale": {"scheme": "viridis"}},
            "tooltip": [{"field": "step_lo", "type": "quantitative", "title": "step"},
                        {"field": "lo", "type": "quantitative", "format": ".2f"},
                        {"field": "hi", "type": "quantitative", "format": ".2f"},
                        {"field": "fraction", "type": "quantitative", "format": ".1%"}],
        },
    }, frame)


def compare_frame(runs: Mapping[str, Iterable[Mapping[str, Any]]], metric: str, *,
                  x: str = "step", smoothing: float = 0.0) -> pd.DataFrame:
    """Long frame `<x>, series, value, smoothed` overlaying `metric` of several runs.

    runs: {legend label: that job's metric series}. With `x` a metric (`time/elapsed`,
    `rollouts/total`) each point's step is mapped onto it by interpolation; a run without that
    x series is left out rather than drawn against the wrong axis.
    """
    frames = []
    for label, series in runs.items():
        found = by_name(series)
        frame = series_frame(found.values(), [metric], smoothing=smoothing, labels={metric: label})
        if frame.empty:
            continue
        if x != "step":
            xs = found.get(x)
            pairs = [(s, v) for s, v in zip(xs["steps"], xs["values"], strict=True)
                     if v is not None] if xs else []
            if not pairs:
                continue
            x_steps, x_values = map(np.asarray, zip(*pairs, strict=True))
            frame[x] = np.interp(frame["step"], x_steps, x_values)
        frames.append(frame)
    columns = [x, "series", "value", "smoothed"] + (["step"] if x != "step" else [])
    if not frames:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]
