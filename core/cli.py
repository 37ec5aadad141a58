"""The `basis` command line: admin tasks on the database, and a thin client for the REST API.

    basis admin create-key --name NAME | revoke-key PREFIX | list-keys | migrate
    basis datasets upload FILE [--name N] | list | get ID | delete ID
    basis jobs create --dataset ID --model NAME [--config FILE] [--set key=value ...] [--queue Q]
    basis jobs list [--status S] | get ID | cancel ID | retry ID | delete ID | logs ID [--follow]
    basis models list

Admin commands talk to the database in `BASIS_DATABASE_URL`; everything else goes through the API at
`BASIS_API_URL` with `BASIS_API_KEY`, exactly as the dashboard does. Other packages add subcommands
through a `register(subparsers)` function in `worker/cli.py` (`basis up`, `basis worker`): each
parser sets `func=callable(args) -> int | None` with `set_defaults`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.settings import get_settings

TERMINAL = {"succeeded", "failed", "cancelled"}


class CliError(Exception):
    """A failure to report in one line on stderr, exit status 1."""


# ----------------------------------------------------------------------------- admin


def admin_create_key(args: argparse.Namespace) -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from core.db import session_scope
    from core.services.keys import create_key

    try:
        with session_scope() as session:
            key, secret = create_key(session, args.name)
    except (OperationalError, ProgrammingError) as exc:
        raise CliError(f"cannot create a key ({type(exc).__name__}); run `basis admin migrate` first?") from exc
    print(f"Created API key {key.prefix}... for user {args.name!r}. It is shown only once:", file=sys.stderr)
    print(secret)


def admin_revoke_key(args: argparse.Namespace) -> None:
    from core.db import session_scope
    from core.services.keys import revoke_key

    with session_scope() as session:
        count = revoke_key(session, args.prefix)
    print(f"revoked {count} key(s) with prefix {args.prefix[:11]}")


def admin_list_keys(args: argparse.Namespace) -> None:
    from core.db import session_scope
    from core.services.keys import list_keys

    with session_scope() as session:
        for key, user in list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            print(f"{key.prefix}  {user.name:<20}  {key.created_at:%Y-%m-%d %H:%M}  {state}")


def admin_migrate(args: argparse.Namespace) -> None:
    from core.db import migrate

    migrate(args.database_url or get_settings().database_url)
    print("database schema is at the latest revision")


# ----------------------------------------------------------------------------- REST client


class Api:
    """Minimal client: JSON in, JSON out, API errors raised as CliError."""

    def __init__(self, http: httpx.Client | None = None):
        settings = get_settings()
        self.http = http or httpx.Client(base_url=settings.api_url, timeout=60)
        self.headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, headers=self.headers, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the API at {self.http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                where = f" ({error['param']})" if error.get("param") else ""
                message = f"{error['code']}: {error['message']}{where}"
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}: {response.text[:200]}"
            raise CliError(message)
        return response.json() if response.content else None


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


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


def datasets_upload(args, api: Api) -> None:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    with open(path, "rb") as handle:
        data = {"name": args.name} if args.name else None
        _print_json(api.request("POST", "/v1/datasets", data=data,
                                files={"file": (path.name, handle, "application/jsonl")}))


def datasets_list(args, api: Api) -> None:
    for d in api.request("GET", "/v1/datasets", params={"limit": args.limit})["data"]:
        print(f"{d['id']}  {d['rows']:>8} rows  {d['bytes']:>10} B  {d['name']}")


def jobs_create(args, api: Api) -> None:
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
    body = {"dataset_id": args.dataset, "model": args.model, "config": config}
    if args.queue:
        body["queue"] = args.queue
    _print_json(api.request("POST", "/v1/jobs", json=body))


def jobs_list(args, api: Api) -> None:
    params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
    for j in api.request("GET", "/v1/jobs", params=params)["data"]:
        steps = f"{j['current_step']}/{j['max_steps'] or '?'}"
        print(f"{j['id']}  {j['status']:<17}  {steps:>9}  {j['estimator']:<12}  {j['model']}")


def jobs_logs(args, api: Api) -> None:
    after = None
    while True:
        params = {"limit": 1000, **({"after": after} if after is not None else {})}
        page = api.request("GET", f"/v1/jobs/{args.id}/events", params=params)
        for event in page["data"]:
            print(f"{event['created_at']}  {event['level']:<7}  {event['kind']:<16}  {event['message']}",
                  flush=True)
            after = event["id"]
        if page["has_more"]:
            continue
        if not args.follow or api.request("GET", f"/v1/jobs/{args.id}")["status"] in TERMINAL:
            # One last read: events written between the two requests.
            if args.follow and api.request("GET", f"/v1/jobs/{args.id}/events",
                                           params={"after": after or 0})["data"]:
                continue
            return
        time.sleep(args.interval)


def jobs_delete(args, api: Api) -> None:
    api.request("DELETE", f"/v1/jobs/{args.id}")
    print(f"deleted job {args.id} with its metrics, events, checkpoints and run directory")


def models_list(args, api: Api) -> None:
    for model in api.request("GET", "/v1/models")["data"]:
        print(model["id"])


def _client(handler):
    """Adapt `handler(args, api)` to `func(args)`, building the client lazily."""
    return lambda args: handler(args, Api(getattr(args, "http", None)))


def _simple(method: str, path: str):
    return _client(lambda args, api: _print_json(api.request(method, path.format(id=args.id))))


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basis", description="BASIS platform command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    admin = commands.add_parser("admin", help="database administration").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = admin.add_parser("create-key", help="create an API key (and its user); prints the key last")
    p.add_argument("--name", required=True, help="user name")
    p.set_defaults(func=admin_create_key)
    p = admin.add_parser("revoke-key", help="revoke the key with this prefix (as shown by list-keys)")
    p.add_argument("prefix")
    p.set_defaults(func=admin_revoke_key)
    admin.add_parser("list-keys", help="list keys by prefix").set_defaults(func=admin_list_keys)
    p = admin.add_parser("migrate", help="bring the database schema to the latest revision")
    p.add_argument("--database-url", help="default BASIS_DATABASE_URL")
    p.set_defaults(func=admin_migrate)

    datasets = commands.add_parser("datasets", help="upload and list datasets").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = datasets.add_parser("upload", help="upload a JSONL file")
    p.add_argument("file")
    p.add_argument("--name")
    p.set_defaults(func=_client(datasets_upload))
    p = datasets.add_parser("list")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_client(datasets_list))
    for action, method, path in [("get", "GET", "/v1/datasets/{id}"), ("delete", "DELETE", "/v1/datasets/{id}")]:
        p = datasets.add_parser(action)
        p.add_argument("id")
        p.set_defaults(func=_simple(method, path))

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
    for action, method, path, help_text in [
            ("get", "GET", "/v1/jobs/{id}", None),
            ("cancel", "POST", "/v1/jobs/{id}/cancel", None),
            ("retry", "POST", "/v1/jobs/{id}/retry",
             "re-queue a failed or cancelled job; it resumes from its newest checkpoint")]:
        p = jobs.add_parser(action, **({"help": help_text} if help_text else {}))
        p.add_argument("id")
        p.set_defaults(func=_simple(method, path))
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

    if importlib.util.find_spec("worker.cli") is not None:
        importlib.import_module("worker.cli").register(commands)
    return parser


def main(argv: list[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Entry point of `basis`; `http` lets tests point the client at an in-process app."""
    from core.services.errors import DomainError

    args = build_parser().parse_args(argv)
    args.http = http
    try:
        return args.func(args) or 0
    except (CliError, DomainError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
