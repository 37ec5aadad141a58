"""Sinks: JSONL round trip, fan-out, histogram edges and folding, console output."""

import io

import numpy as np

from trainer.sinks import (
    ConsoleSink,
    Histogram,
    JsonlSink,
    MetricsSink,
    MultiSink,
    NullSink,
    PhaseProgress,
    advantage_histogram,
    read_jsonl_metrics,
)


def test_advantage_histogram_folds_out_of_range_into_end_bins():
    h = advantage_histogram(np.array([-5.0, -1.0, 0.0, 0.01, 0.99, 3.0, np.nan]))
    assert len(h.edges) == 21 and len(h.counts) == 20
    assert h.edges[0] == -1.0 and h.edges[-1] == 1.0
    assert h.counts[0] == 2 and h.counts[-1] == 2 and sum(h.counts) == 6


def test_jsonl_sink_round_trip(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.log_step(0, {"eval/accuracy": 0.25}, {})
    sink.log_step(1, {"reward/mean": 0.5, "bad": float("nan")},
                  {"advantage": Histogram([-1.0, 0.0, 1.0], [1, 2])})
    sink.log_event("status", "running", {"x": 1})
    sink.close()
    got = read_jsonl_metrics(path)
    assert got == {0: {"eval/accuracy": 0.25}, 1: {"reward/mean": 0.5, "bad": None}}
    assert '"kind": "status"' in path.read_text()


class Recorder:
    def __init__(self):
        self.calls = []

    def log_step(self, step, metrics, histograms, samples=()):
        self.calls.append(("step", step))

    def log_event(self, kind, message, data=None):
        self.calls.append(("event", kind))

    def close(self):
        self.calls.append(("close",))


def test_multi_sink_fans_out_and_protocol():
    a, b = Recorder(), Recorder()
    sink = MultiSink(a, b, NullSink())
    assert isinstance(sink, MetricsSink) and isinstance(NullSink(), MetricsSink)
    sink.log_step(3, {}, {})
    sink.log_event("k", "m")
    sink.close()
    assert a.calls == b.calls == [("step", 3), ("event", "k"), ("close",)]


def test_console_sink_writes_compact_line():
    out = io.StringIO()
    sink = ConsoleSink(max_steps=10, every=2, stream=out)
    sink.log_step(1, {"reward/mean": 0.1}, {})
    sink.log_step(2, {"reward/mean": 0.5, "reward/accuracy": 0.25}, {})
    sink.log_event("status", "running")
    sink.close()
    text = out.getvalue()
    assert "step 2 reward=0.5 acc=0.25" in text and "step 1 " not in text
    assert "[status] running" in text


def test_progress_line_eta_follows_the_recent_pace_not_the_priors_phase():
    from trainer.sinks import StepRate, progress_line

    # 60 s of priors before step 1, then 1 s a step: the average would say ~4x too long.
    rate = StepRate(weight=0.5)
    for step in range(1, 11):
        pace = rate.update(step, {"time/elapsed": 60.0 + step})
    line = progress_line(10, 100, {"reward/mean": 0.25, "reward/accuracy": 0.2,
                                   "time/elapsed": 70.0}, pace)
    assert line == "step 10/100 reward=0.25 acc=0.2 elapsed 1m10s eta 1m30s"
    assert progress_line(10, 100, {"time/elapsed": 70.0}).endswith("eta 10m30s")  # the average
    assert "unscorable=0.75" in progress_line(3, None, {"reward/unscorable_frac": 0.75})


def test_phase_progress_reports_each_tenth_once_with_an_eta_and_stays_quiet_when_quick():
    now = [0.0]
    lines: list[tuple[str, dict]] = []
    progress = PhaseProgress("estimating priors: rollouts", lambda line, data: lines.append((line, data)),
                             clock=lambda: now[0])
    for done in range(0, 1001, 50):  # 10 s per 50 rollouts
        now[0] = done / 5
        progress(done, 1000)
    assert len(lines) == 10
    assert lines[0] == ("estimating priors: rollouts 100/1000 (10%), elapsed 20s, eta 3m00s",
                        {"done": 100, "total": 1000, "progress": 0.1})
    assert lines[-1][0] == "estimating priors: rollouts 1000/1000 (100%), elapsed 3m20s"

    quick: list = []
    fast = PhaseProgress("x", lambda line, data: quick.append(line), clock=lambda: 0.5)
    for done in (5, 10):
        fast(done, 10)
    assert quick == []  # under min_seconds: the phase's own summary line is enough
    slow = PhaseProgress("warm start, step", lambda line, data: quick.append(line), min_seconds=0,
                         eta="at most", clock=iter([0, 30]).__next__)
    slow(240, 2400, ", loss 1.234")
    assert quick == ["warm start, step 240/2400 (10%), loss 1.234, elapsed 30s, at most 4m30s"]
