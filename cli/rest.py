"""`basis datasets | jobs | models ...`: the REST API through the shared typed client (`client/`).

These commands use nothing but the client, exactly as the dashboard does: the API at
`BASIS_API_URL` with `BASIS_API_KEY`. JSON answers are printed as the API sent them (the client's
model dumped back to JSON); lists as one aligned line per item.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel

from cli.errors import CliError
from client import BasisClient, env_connection
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


def datasets_list(args: argparse.Namespace, api: BasisClient) -> None:
    for d in api.list_datasets(limit=args.limit).data:
        print(f"{d.id}  {d.rows:>8} rows  {d.bytes:>10} B  {d.name}")


def datasets_delete(args: argparse.Namespace, api: BasisClient) -> None:
    api.delete_dataset(args.id)
    print(f"deleted dataset {args.id}")


def jobs_create(args: argparse.Namespace, api: BasisClient) -> None:
    config: dict[str, Any] = {}
    if args.config:
        try:
            config = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CliError(f"cannot read {args.config}: {exc}") from exc
        if not isinstance(config, dict):
            raise CliError(f"{args.config} must hold a mapping of TrainConfig fields")
    for assignment in args.set or []:
        _set_dotted(config, assignment)
    _print_json(api.create_job(dataset_id=args.dataset, model=args.model, config=config,
                               queue=args.queue))


def jobs_list(args: argparse.Namespace, api: BasisClient) -> None:
    for j in api.list_jobs(status=args.status, limit=args.limit).data:
        steps = f"{j.current_step}/{j.max_steps or '?'}"
        print(f"{j.id}  {j.status:<17}  {steps:>9}  {j.estimator:<12}  {j.model}")


def jobs_logs(args: argparse.Namespace, api: BasisClient) -> None:
    after = None
    while True:
        for event in api.iter_events(args.id, after=after, page_size=1000):
            when = event.model_dump(mode="json", include={"created_at"})["created_at"]  # as sent
            print(f"{when}  {event.level:<7}  {event.kind:<16}  {event.message}",
                  flush=True)
            after = event.id
        if not args.follow or api.get_job(args.id).status in TERMINAL:
            # One last read: events written between the two requests.
            if args.follow and api.list_events(args.id, after=after or 0).data:
                continue
            return
        time.sleep(args.interval)


def jobs_delete(args: argparse.Namespace, api: BasisClient) -> None:
    api.delete_job(args.id)
    print(f"deleted job {args.id} with its metrics, events, checkpoints and run directory")


def models_list(args: argparse.Namespace, api: BasisClient) -> None:
    for model in api.models():
        print(model.id)


def _client(handler: Handler) -> Callable[[argparse.Namespace], None]:
    """Adapt `handler(args, api)` to `func(args)`, building the client lazily (tests pass `http`)."""
    def run(args: argparse.Namespace) -> None:
        http: httpx.Client | None = getattr(args, "http", None)
        url, key = env_connection()
        with BasisClient(url, key, timeout=60, http=http) as api:
            handler(args, api)
    return run


def _show(method: Callable[[BasisClient, str], BaseModel]) -> Callable[[argparse.Namespace], None]:
    """A command that prints `method(api, args.id)` as JSON (`jobs get ID`, `jobs cancel ID`...)."""
    return _client(lambda args, api: _print_json(method(api, args.id)))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`basis datasets ...`, `basis jobs ...`, `basis models list`."""
    datasets = commands.add_parser("datasets", help="upload and list datasets").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = datasets.add_parser("upload", help="upload a JSONL file")
    p.add_argument("file")
    p.add_argument("--name")
    p.set_defaults(func=_client(datasets_upload))
    p = datasets.add_parser("list")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_client(datasets_list))
    p = datasets.add_parser("get")
    p.add_argument("id")
    p.set_defaults(func=_show(BasisClient.get_dataset))
    p = datasets.add_parser("delete")
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
    p = jobs.add_parser("list")
    p.add_argument("--status")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_client(jobs_list))
    for action, method, help_text in [
            ("get", BasisClient.get_job, None),
            ("cancel", BasisClient.cancel_job, None),
            ("retry", BasisClient.retry_job,
             "re-queue a failed or cancelled job; it resumes from its newest checkpoint")]:
        p = jobs.add_parser(action, **({"help": help_text} if help_text else {}))
        p.add_argument("id")
        p.set_defaults(func=_show(method))
    p = jobs.add_parser("delete", help="delete a finished job and everything it wrote (cancel it first)")
    p.add_argument("id")
    p.set_defaults(func=_client(jobs_delete))
    p = jobs.add_parser("logs", help="print a job's events")
    p.add_argument("id")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_client(jobs_logs))

    models = commands.add_parser("models", help="models available to jobs").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    models.add_parser("list").set_defaults(func=_client(models_list))
