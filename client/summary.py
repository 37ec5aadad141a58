"""Plain-text views of a job for people: the finished job's one-line summary and its rollout
samples (printed by `basis jobs get | logs | samples` and `basis up --demo`), an evaluation's
results and samples (`basis evals ...`), durations."""

from __future__ import annotations

from client.models import EvalPublic, EvalSamplePublic, JobPublic, SamplePublic
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


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def eval_summary(evaluation: EvalPublic) -> str:
    """"eval_x succeeded: tiny-arith on ds_y, 200 rows x 4: accuracy 0.412, pass@1 0.412, pass@4
    0.700, 5.1 tokens, unscorable 0.000" (the rows so far while it runs)."""
    head = f"{evaluation.id} {evaluation.status}: {evaluation.model} on {evaluation.dataset_id}"
    r = evaluation.results
    if r is None:
        text = f"{head}, no rows evaluated yet"
    else:
        passes = ", ".join(f"pass@{k} {_figure(v)}" for k, v in r.pass_at_k.items())
        text = (f"{head}, {r.rows} rows x {r.samples_per_prompt}: accuracy {_figure(r.accuracy)}, "
                f"{passes}, {_figure(r.mean_response_tokens)} tokens, unscorable "
                f"{_figure(r.unscorable_frac)}")
    return f"{text}; {evaluation.error}" if evaluation.error else text


def eval_sample_lines(samples: list[EvalSamplePublic]) -> list[str]:
    """One block per sample: row, sample, reward, then the prompt and completion indented."""
    out = []
    for s in samples:
        reward = "unscorable" if s.reward is None else f"{s.reward:.3g}"
        out.append(f"row {s.row} #{s.sample}  reward {reward}  {s.finish_reason}  answer {s.answer!r}")
        out.append(f"    prompt:     {s.prompt!r}")
        out.append(f"    completion: {s.completion!r}")
    return out
