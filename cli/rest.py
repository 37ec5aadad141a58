"""`basis datasets | jobs | evals | models ...`: the REST API through the shared typed client (`client/`).

These commands use nothing but the client, exactly as the dashboard does: the API at
`BASIS_API_URL` with `BASIS_API_KEY`. JSON answers are printed as the API sent them (the client's
model dumped back to JSON); lists as one aligned line per item.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel

from cli.errors import CliError
from client import BasisClient, env_connection
from client.models import ModelPullPublic
from client.rest import EXPORT_TIMEOUT, IMPORT_TIMEOUT
from client.summary import eval_sample_lines, eval_summary, job_summary, sample_lines
from core.status import TERMINAL

Handler = Callable[[argparse.Namespace, BasisClient], None]


def _print_json(value: BaseModel) -> None:
    print(json.dumps(value.model_dump(mode="json"), indent=2))


def _set_dotted(config: dict[str, Any], assignment: str) -> None:
    """`a.b=value` -> config["a"]["b"] = YAML-parsed value (numbers, booleans, lists work)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise CliError(f"--set expects key=value, got {assignment!r}")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CliError(f"--set {key}: {part} is not a mapping")
    node[leaf] = yaml.safe_load(raw)


def datasets_upload(args: argparse.Namespace, api: BasisClient) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    with open(path, "rb") as handle:
        _print_json(api.upload_dataset(handle, path.name, name=args.name))


def datasets_import(args: argparse.Namespace, api: BasisClient) -> None:
    """A local file (sent with the request) or a hub id, through the field mapping."""
    if (args.file is None) == (args.hub is None):
        raise CliError("give a local FILE or --hub ORG/NAME (not both)")
    mapping: dict[str, Any] = {
        "answer_field": args.answer_field, "prompt_field": args.prompt_field,
        "prompt_template": args.template, "system_prompt": args.system,
        "answer_preset": args.preset, "id_field": args.id_field,
        "keep_fields": args.keep.split(",") if args.keep else None, "max_rows": args.max_rows,
        "name": args.name}
    if args.hub is not None:
        _print_json(api.import_dataset(hub_id=args.hub, config=args.config, split=args.split,
                                       revision=args.revision, **mapping))
        return
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    with open(path, "rb") as handle:
        _print_json(api.import_dataset(file=handle, filename=path.name, file_format=args.format,
                                       **mapping))


def datasets_list(args: argparse.Namespace, api: BasisClient) -> None:
    for d in api.list_datasets(limit=args.limit).data:
        print(f"{d.id}  {d.rows:>8} rows  {d.bytes:>10} B  {d.name}")


def jobs_get(args: argparse.Namespace, api: BasisClient) -> None:
    """The job as JSON on stdout; a finished job's summary on stderr (pipes keep clean JSON)."""
    job = api.get_job(args.id)
    _print_json(job)
    summary = job_summary(api, job)
    if summary:
        print(summary, file=sys.stderr)


def jobs_samples(args: argparse.Namespace, api: BasisClient) -> None:
    samples = api.samples(args.id, step=args.step, max_items=args.limit)
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in samples], indent=2))
        return
    for line in sample_lines(samples):
        print(line)
    if not samples:
        print("no samples" + (f" at step {args.step}" if args.step is not None else " yet"),
              file=sys.stderr)


def datasets_delete(args: argparse.Namespace, api: BasisClient) -> None:
    api.delete_dataset(args.id)
    print(f"deleted dataset {args.id}")


def _read_mapping(path: str | None, what: str) -> dict[str, Any]:
    """The YAML mapping in `path` (`--config`), {} without one; a CliError naming the file otherwise."""
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CliError(f"{path} must hold a mapping of {what}")
    return loaded


def jobs_create(args: argparse.Namespace, api: BasisClient) -> None:
    config = _read_mapping(args.config, "TrainConfig fields")
    for assignment in args.set or []:
        _set_dotted(config, assignment)
    _print_json(api.create_job(dataset_id=args.dataset, model=args.model, config=config,
                               queue=args.queue))


def jobs_list(args: argparse.Namespace, api: BasisClient) -> None:
    for j in api.list_jobs(status=args.status, limit=args.limit).data:
        steps = f"{j.current_step}/{j.max_steps or '?'}"
        print(f"{j.id}  {j.status:<17}  {steps:>9}  {j.estimator:<12}  {j.model}")


def jobs_logs(args: argparse.Namespace, api: BasisClient) -> None:
    """Status changes, one progress line per step (reward, accuracy, ETA), warnings and errors."""
    after = None
    while True:
        page = api.logs(args.id, after=after, limit=1000)
        for line in page.data:
            print(line.line, flush=True)
            after = line.id
        if page.has_more:
            continue
        if not args.follow:
            return
        job = api.get_job(args.id)
        if job.status in TERMINAL:
            if api.logs(args.id, after=after).data:  # lines written between the two requests
                continue
            summary = job_summary(api, job)
            if summary:
                print(summary, flush=True)
            return
        time.sleep(args.interval)


def jobs_delete(args: argparse.Namespace, api: BasisClient) -> None:
    api.delete_job(args.id)
    print(f"deleted job {args.id} with its metrics, events, checkpoints and run directory")


# `basis evals create` flags -> the evaluation's fields (the rest go through --set).
EVAL_FLAGS = ("reward", "samples_per_prompt", "temperature", "max_new_tokens", "max_rows", "engine",
              "seed", "batch_rows")


def evals_create(args: argparse.Namespace, api: BasisClient) -> None:
    """Create an evaluation; with `--wait`, follow it to the end and print its results line."""
    options = _read_mapping(args.config, "evaluation fields")
    options.update({name: getattr(args, name) for name in EVAL_FLAGS
                    if getattr(args, name) is not None})
    for assignment in args.set or []:
        _set_dotted(options, assignment)
    evaluation = api.create_eval(model=args.model, dataset_id=args.dataset, queue=args.queue,
                                 **options)
    if not args.wait:
        _print_json(evaluation)
        return
    # A line on stderr at each change of status or batch: a queued evaluation may wait behind a
    # training job on the same worker for minutes, and silence reads as a hang.
    print(f"{evaluation.id} queued", file=sys.stderr, flush=True)
    seen = (evaluation.status, evaluation.current_step)
    while evaluation.status not in TERMINAL:
        time.sleep(args.interval)
        evaluation = api.get_eval(evaluation.id)
        now = (evaluation.status, evaluation.current_step)
        if now != seen and evaluation.status not in TERMINAL:
            batches = f", batch {evaluation.current_step}/{evaluation.max_steps}" \
                if evaluation.status == "running" else ""
            print(f"{evaluation.id} {evaluation.status}{batches}", file=sys.stderr, flush=True)
        seen = now
    _print_json(evaluation)
    print(eval_summary(evaluation), file=sys.stderr)


def evals_get(args: argparse.Namespace, api: BasisClient) -> None:
    """The evaluation as JSON on stdout; its results line on stderr (pipes keep clean JSON)."""
    evaluation = api.get_eval(args.id)
    _print_json(evaluation)
    print(eval_summary(evaluation), file=sys.stderr)


def evals_list(args: argparse.Namespace, api: BasisClient) -> None:
    for e in api.list_evals(status=args.status, limit=args.limit).data:
        r = e.results
        figures = "" if r is None else (
            f"{r.rows:>6} rows x {r.samples_per_prompt:<3} acc "
            + ("-" if r.accuracy is None else f"{r.accuracy:.3f}")
            + "".join(f" pass@{k} " + ("-" if v is None else f"{v:.3f}") for k, v in r.pass_at_k.items()))
        print(f"{e.id}  {e.status:<10}  {e.model:<24}  {e.dataset_id}  {figures}".rstrip())


def evals_samples(args: argparse.Namespace, api: BasisClient) -> None:
    samples = api.eval_samples(args.id, row=args.row, max_items=args.limit)
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in samples], indent=2))
        return
    for line in eval_sample_lines(samples):
        print(line)
    if not samples:
        results = api.get_eval(args.id).results if args.row is not None else None
        beyond = results is not None and args.row >= results.rows
        print("no samples" + (f" for row {args.row}" if args.row is not None else " yet")
              + (f": the evaluation has rows 0 to {results.rows - 1}" if beyond and results else ""),
              file=sys.stderr)


def evals_delete(args: argparse.Namespace, api: BasisClient) -> None:
    api.delete_eval(args.id)
    print(f"deleted evaluation {args.id} with its results, samples and events")


def evals_events(args: argparse.Namespace, api: BasisClient) -> None:
    for event in api.eval_events(args.id):
        print(f"{event.ts:%Y-%m-%d %H:%M:%S} {event.level.upper():<7} [{event.kind}] {event.message}")


def models_list(args: argparse.Namespace, api: BasisClient) -> None:
    """One line per model: name, source, format, size; `--json` prints the API's objects."""
    models = api.models()
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return
    for m in models:
        size = f"{m.bytes / 2**20:.1f} MB" if m.bytes is not None else "?"
        base = f"  (on {m.base_model})" if m.base_model else ""
        print(f"{m.id:<40}  {m.source:<6}  {m.format:<7}  {size:>10}{base}")


def jobs_checkpoints(args: argparse.Namespace, api: BasisClient) -> None:
    """One line per checkpoint, oldest first: the id `basis jobs export` takes, step, size, time."""
    found = api.checkpoints(args.id)
    if args.json:
        print(json.dumps([c.model_dump(mode="json") for c in found], indent=2))
        return
    for c in found:
        print(f"{c.id}  step {c.step:>6}  {c.bytes / 2**20:>9.1f} MB  {c.created_at:%Y-%m-%d %H:%M:%S}")
    if not found:
        print(f"job {args.id} has no checkpoint yet", file=sys.stderr)


def jobs_export(args: argparse.Namespace, api: BasisClient) -> None:
    """Export a checkpoint (an id from `GET .../checkpoints`, or `latest`) as a model."""
    checkpoint = args.checkpoint
    if checkpoint == "latest":
        found = api.checkpoints(args.job)
        if not found:
            raise CliError(f"job {args.job} has no checkpoint yet")
        checkpoint = max(found, key=lambda c: c.step).id
    _print_json(api.export_checkpoint(args.job, checkpoint, name=args.name, merge_lora=not args.adapter))


def models_delete(args: argparse.Namespace, api: BasisClient) -> None:
    api.delete_model(args.name)
    print(f"deleted model {args.name} and its files")


# `basis models pull`: the server downloads (`POST /v1/models` answers 202 once the repo is checked:
# revision, safetensors, size); the command polls `GET /v1/model-pulls/{id}` and draws progress on
# stderr, so it works alike from a laptop or on the server, and a closed terminal does not stop the
# pull (`--no-wait` returns at once).


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _progress(pull: ModelPullPublic, tty: bool) -> str:
    share = pull.bytes_done / pull.bytes_total if pull.bytes_total else 1.0
    width = 30
    bar = "#" * int(share * width) + "-" * (width - int(share * width))
    text = f"[{bar}] {share:4.0%}  {_mb(pull.bytes_done)} / {_mb(pull.bytes_total)}"
    return f"\r{text}" if tty else text


def wait_for_pull(api: BasisClient, pull: ModelPullPublic, interval: float) -> ModelPullPublic:
    """Poll until the pull ends, drawing progress on stderr (a line per 10% when not a terminal)."""
    tty = sys.stderr.isatty()
    last_tenth = -1
    while pull.status == "downloading":
        tenth = int(10 * pull.bytes_done / pull.bytes_total) if pull.bytes_total else 10
        if tty or tenth > last_tenth:
            print(_progress(pull, tty), end="" if tty else "\n", file=sys.stderr, flush=True)
            last_tenth = tenth
        time.sleep(interval)
        pull = api.model_pull(pull.id)
    print(_progress(pull, tty), file=sys.stderr, flush=True)
    return pull


def models_pull(args: argparse.Namespace, api: BasisClient) -> None:
    pull = api.pull_model(args.ref, revision=args.revision, name=args.name)
    at = f"@{pull.revision}" if pull.revision else ""
    print(f"pulling {pull.repo_id}{at} (commit {pull.commit[:12]}, {len(pull.files)} files, "
          f"{_mb(pull.bytes_total)}) as {pull.name!r}: pull {pull.id}", file=sys.stderr, flush=True)
    if args.no_wait:
        print(pull.id)
        return
    pull = wait_for_pull(api, pull, args.interval)
    if pull.status != "succeeded":
        error = pull.error
        raise CliError(f"pull {pull.id} failed: {error.code}: {error.message}" if error
                       else f"pull {pull.id} failed")
    model = pull.model
    if model is not None:
        params = f"{model.parameter_count:,} parameters" if model.parameter_count is not None else "? parameters"
        chat = "a chat template" if model.chat_template else "no chat template"
        print(f"pulled {pull.repo_id} at commit {pull.commit} as {pull.name!r}: {model.architecture}, "
              f"{params}, {_mb(model.bytes or 0)}, {chat}", file=sys.stderr)
    print(pull.name)


def _client(handler: Handler, timeout: float = 60) -> Callable[[argparse.Namespace], None]:
    """Adapt `handler(args, api)` to `func(args)`, building the client lazily (tests pass `http`)."""
    def run(args: argparse.Namespace) -> None:
        http: httpx.Client | None = getattr(args, "http", None)
        url, key = env_connection()
        with BasisClient(url, key, timeout=timeout, http=http) as api:
            handler(args, api)
    return run


def _show(method: Callable[[BasisClient, str], BaseModel]) -> Callable[[argparse.Namespace], None]:
    """A command that prints `method(api, args.id)` as JSON (`jobs get ID`, `jobs cancel ID`...)."""
    return _client(lambda args, api: _print_json(method(api, args.id)))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`basis datasets ...`, `basis jobs ...`, `basis models list|get|delete|pull`."""
    datasets = commands.add_parser("datasets", help="upload and list datasets").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = datasets.add_parser("upload", help="upload a JSONL file")
    p.add_argument("file")
    p.add_argument("--name")
    p.set_defaults(func=_client(datasets_upload))
    p = datasets.add_parser(
        "import", help="import a parquet/JSON/CSV file or a Hugging Face dataset with a field mapping",
        description="Import rows from a local .parquet/.json/.jsonl/.csv FILE (sent to the API) or "
        "from a Hugging Face dataset (--hub), mapping its fields onto prompt and answer. Example "
        "(GSM8K): basis datasets import gsm8k.parquet --prompt-field question --answer-field answer "
        "--preset gsm8k")
    p.add_argument("file", nargs="?", help="local file to send (or use --hub)")
    p.add_argument("--hub", metavar="ORG/NAME", help="Hugging Face dataset id (HF_ENDPOINT and "
                   "HF_TOKEN are the API server's)")
    p.add_argument("--config", help="the hub dataset's config (subset)")
    p.add_argument("--split", help="the hub dataset's split (default train)")
    p.add_argument("--revision", help="hub branch, tag or commit")
    p.add_argument("--format", choices=["parquet", "json", "csv"],
                   help="the file's format when its extension does not say")
    p.add_argument("--prompt-field", help="field holding the prompt")
    p.add_argument("--template", help="prompt built from {field} placeholders, e.g. 'Q: {question}'")
    p.add_argument("--system", help="system prompt (the prompt becomes chat messages)")
    p.add_argument("--answer-field", required=True, help="field holding the answer")
    p.add_argument("--preset", choices=["plain", "gsm8k", "boxed"],
                   help="answer extraction: plain (default), gsm8k ('#### N'), boxed (\\boxed{..})")
    p.add_argument("--id-field", help="field holding row ids")
    p.add_argument("--keep", metavar="F1,F2", help="fields copied into each row as they are")
    p.add_argument("--max-rows", type=int, help="import only the first N rows")
    p.add_argument("--name")
    p.set_defaults(func=_client(datasets_import, timeout=IMPORT_TIMEOUT))
    p = datasets.add_parser("list", help="list your datasets")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_client(datasets_list))
    p = datasets.add_parser("get", help="show one dataset")
    p.add_argument("id")
    p.set_defaults(func=_show(BasisClient.get_dataset))
    p = datasets.add_parser("delete", help="delete a dataset (jobs trained on it keep their results)")
    p.add_argument("id")
    p.set_defaults(func=_client(datasets_delete))

    jobs = commands.add_parser("jobs", help="create and follow training jobs").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = jobs.add_parser("create", help="create a training job")
    p.add_argument("--dataset", required=True, help="dataset id")
    p.add_argument("--model", required=True, help="model name from `basis models list`")
    p.add_argument("--config", help="YAML or JSON file of TrainConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field (a.b=1)")
    p.add_argument("--queue", help="worker queue (GPU pool)")
    p.set_defaults(func=_client(jobs_create))
    p = jobs.add_parser("list", help="list your jobs, newest first")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_client(jobs_list))
    p = jobs.add_parser("get", help="show a job (and a finished job's summary on stderr)")
    p.add_argument("id")
    p.set_defaults(func=_client(jobs_get))
    for action, method, help_text in [
            ("cancel", BasisClient.cancel_job, "cancel a job: at once if queued, at the next step if running"),
            ("retry", BasisClient.retry_job,
             "re-queue a failed or cancelled job; it resumes from its newest checkpoint")]:
        p = jobs.add_parser(action, help=help_text)
        p.add_argument("id")
        p.set_defaults(func=_show(method))
    p = jobs.add_parser("delete", help="delete a finished job and everything it wrote (cancel it first)")
    p.add_argument("id")
    p.set_defaults(func=_client(jobs_delete))
    p = jobs.add_parser("logs", help="print a job's log: status, per-step progress, warnings, errors")
    p.add_argument("id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_client(jobs_logs))
    p = jobs.add_parser("samples", help="print rollout samples: prompt, completion, reward, advantage")
    p.add_argument("id")
    p.add_argument("--step", type=int, help="only this training step")
    p.add_argument("--limit", type=int, default=100, help="at most this many samples")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=_client(jobs_samples))

    p = jobs.add_parser("checkpoints", help="list a job's checkpoints (ids for `export`), oldest first")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=_client(jobs_checkpoints))
    p = jobs.add_parser(
        "export", help="export a checkpoint as a model you can train or evaluate",
        description="Export a checkpoint as a model you can train or evaluate. Merging a LoRA "
                    f"checkpoint into a large base model runs inside the request, so this waits up "
                    f"to {EXPORT_TIMEOUT / 60:.0f} minutes for the API's answer (other commands "
                    "give up after 60 s).")
    p.add_argument("job", help="job id")
    p.add_argument("checkpoint", help="checkpoint id (from `basis jobs checkpoints JOB`), or 'latest'")
    p.add_argument("--name", help="model name (default ft/<job>-step<N>)")
    p.add_argument("--adapter", action="store_true",
                   help="LoRA jobs: save the adapter with its base recorded instead of merging it")
    p.set_defaults(func=_client(jobs_export))

    evals = commands.add_parser("evals", help="evaluate models on datasets").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = evals.add_parser("create", help="evaluate a model on a dataset (accuracy, pass@k)")
    p.add_argument("--model", required=True, help="model name from `basis models list`")
    p.add_argument("--dataset", required=True, help="dataset id")
    p.add_argument("--reward", help="reward name (default: the model's recommended one, else math)")
    p.add_argument("-k", "--samples-per-prompt", dest="samples_per_prompt", type=int,
                   help="completions per row (pass@k up to k); > 1 needs --temperature > 0")
    p.add_argument("--temperature", type=float, help="0 = greedy (the default)")
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int,
                   help="response length cap (default: the model's recommended one, else 256)")
    p.add_argument("--max-rows", dest="max_rows", type=int, help="only the first N rows")
    p.add_argument("--batch-rows", dest="batch_rows", type=int, help="rows per generation call")
    p.add_argument("--engine", help="rollout engine (hf, vllm)")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="YAML or JSON file of evaluation fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other field, e.g. reward_options.rel_tol=0.01")
    p.add_argument("--queue", help="worker queue (GPU pool)")
    p.add_argument("--wait", action="store_true", help="wait for it to finish, then print it")
    p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_client(evals_create))
    p = evals.add_parser("list", help="list your evaluations, newest first, with their results")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_client(evals_list))
    p = evals.add_parser("get", help="show an evaluation (and its results line on stderr)")
    p.add_argument("id")
    p.set_defaults(func=_client(evals_get))
    p = evals.add_parser("cancel", help="cancel an evaluation: at once if queued, else after a batch")
    p.add_argument("id")
    p.set_defaults(func=_show(BasisClient.cancel_eval))
    p = evals.add_parser("retry", help="re-queue a failed or cancelled evaluation (from its first row)")
    p.add_argument("id")
    p.set_defaults(func=_show(BasisClient.retry_eval))
    p = evals.add_parser("delete", help="delete a finished evaluation with its results and samples")
    p.add_argument("id")
    p.set_defaults(func=_client(evals_delete))
    p = evals.add_parser("samples", help="print an evaluation's completions and rewards, row by row")
    p.add_argument("id")
    p.add_argument("--row", type=int, help="only this row")
    p.add_argument("--limit", type=int, default=100, help="at most this many samples")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=_client(evals_samples))
    p = evals.add_parser("events", help="print an evaluation's events: status changes, errors")
    p.add_argument("id")
    p.set_defaults(func=_client(evals_events))

    models = commands.add_parser("models", help="models available to jobs").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = models.add_parser("list", help="list the models jobs can train")
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=_client(models_list))
    p = models.add_parser("get", help="show one model")
    p.add_argument("name")
    p.set_defaults(func=_client(lambda args, api: _print_json(api.get_model(args.name))))
    p = models.add_parser("delete", help="delete your exported model (admins: a pulled one) with its files")
    p.add_argument("name")
    p.set_defaults(func=_client(models_delete))
    p = models.add_parser("pull", help="pull a model from the server's Hugging Face hub (admins)")
    p.add_argument("ref", metavar="ORG/NAME[@REVISION]", help="hub repo, optionally at a branch, "
                   "tag or commit (the commit it resolves to is recorded)")
    p.add_argument("--revision", help="branch, tag or commit (instead of @REVISION)")
    p.add_argument("--name", help="the model's name in `basis models list` (default: the repo id)")
    p.add_argument("--no-wait", action="store_true", help="print the pull id and return at once")
    p.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_client(models_pull))
