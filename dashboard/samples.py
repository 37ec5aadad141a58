"""Job detail's Samples section, pure part: rollout samples (GET /v1/jobs/{id}/samples) -> a table
filtered by step and sorted by advantage, unscorable rows marked so they stand out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

COLUMNS = ["step", "reward", "advantage", "baseline", "answer", "completion", "prompt",
           "finish", "unscorable"]
UNSCORABLE_STYLE = "background-color: rgba(255, 75, 75, 0.18)"


def sample_steps(samples: Iterable[Mapping[str, Any]]) -> list[int]:
    """The steps that have samples, newest first."""
    return sorted({int(s["step"]) for s in samples}, reverse=True)


def samples_frame(samples: Iterable[Mapping[str, Any]], step: int | None = None,
                  order: str = "advantage, high first") -> pd.DataFrame:
    """One row per sample (of `step`, if given), sorted by `order`: "advantage, high first",
    "advantage, low first" or "batch order"; `unscorable` is True where the reward was null."""
    rows = [{"step": s["step"], "index": s["index"], "reward": s["reward"],
             "advantage": s["advantage"], "baseline": s["baseline"], "answer": s["answer"],
             "completion": s["completion"], "prompt": s["prompt"], "finish": s["finish_reason"],
             "unscorable": s["reward"] is None}
            for s in samples if step is None or s["step"] == step]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "index"])
    if order == "batch order":
        frame = frame.sort_values(["step", "index"])
    else:
        frame = frame.sort_values("advantage", ascending=order.endswith("low first"), kind="stable")
    return frame[COLUMNS].reset_index(drop=True)


def highlight_unscorable(frame: pd.DataFrame):
    """A Styler colouring the rows whose reward could not be computed."""
    return frame.style.apply(
        lambda row: [UNSCORABLE_STYLE if row["unscorable"] else ""] * len(row), axis=1)
