"""Plain-text views of a job for people: the finished job's one-line summary and its rollout
samples (printed by `basis jobs get | logs | samples` and `basis up --demo`), durations."""

from __future__ import annotations

from client.models import JobPublic, SamplePublic
from client.rest import BasisClient
from core.status import TERMINAL


def format_duration(seconds: float | None) -> str:
    """`1h 02m`, `3m 07s`, `12s`; empty for None."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def job_summary(api: BasisClient, job: JobPublic) -> str | None:
    """"job_x succeeded: held-out accuracy 0.212 -> 0.505, 200 steps, training 2m 05s (queued 10s),
    fine-tuned model ft/..-step200" for a finished job; None while it runs."""
    if job.status not in TERMINAL:
        return None
    evals = {s.name: s for s in api.metrics(job.id, names=["eval/accuracy", "time/elapsed"])}
    parts = []
    acc = evals.get("eval/accuracy")
    values = [v for v in (acc.values if acc else []) if v is not None]
    if len(values) >= 2:
        parts.append(f"held-out accuracy {values[0]:.3f} -> {values[-1]:.3f}")
    parts.append(f"{job.current_step} steps")
    if job.started_at and job.finished_at:
        timing = f"training {format_duration((job.finished_at - job.started_at).total_seconds())}"
        queued = (job.started_at - job.created_at).total_seconds()
        parts.append(timing + (f" (queued {format_duration(queued)})" if queued >= 1 else ""))
    if job.fine_tuned_model:
        parts.append(f"fine-tuned model {job.fine_tuned_model}")
    summary = f"{job.id} {job.status}: " + ", ".join(parts)
    return f"{summary}; {job.error}" if job.error else summary


def sample_lines(samples: list[SamplePublic]) -> list[str]:
    """One block per sample: step, reward, advantage, then the prompt and completion indented."""
    out = []
    for s in samples:
        reward = "unscorable" if s.reward is None else f"{s.reward:.3g}"
        base = "-" if s.baseline is None else f"{s.baseline:.3g}"
        out.append(f"step {s.step} #{s.index}  reward {reward}  advantage {s.advantage:+.3f}  "
                   f"baseline {base}  {s.finish_reason}  answer {s.answer!r}")
        out.append(f"    prompt:     {s.prompt!r}")
        out.append(f"    completion: {s.completion!r}")
    return out
