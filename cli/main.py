"""The `basis` command line: admin tasks on the database, the platform on one machine, and a thin
client of the REST API.

    basis admin create-key NAME [--admin] | set-admin NAME [--revoke] | revoke-key PREFIX | list-keys | migrate
    basis up [--demo [--exit-when-done]] [--no-dashboard]      API + worker + dashboard
    basis worker [--queue Q] [--concurrency N] [--pool P]      one Celery worker
    basis datasets upload FILE [--name N] | list | get ID | delete ID
    basis datasets import (FILE | --hub ORG/NAME [--config C] [--split S]) --answer-field F
                          (--prompt-field F | --template T) [--preset gsm8k|boxed|plain] ...
    basis jobs create --dataset ID --model NAME [--config FILE] [--set key=value ...] [--queue Q]
    basis jobs list [--status S] | get ID | cancel ID | retry ID | delete ID | logs ID [--follow]
    basis jobs samples ID [--step N] [--json]
    basis evals create --model NAME --dataset ID [-k N] [--temperature T] [--max-rows N] [--wait] ...
    basis evals list [--status S] | get ID | cancel ID | retry ID | delete ID | events ID
    basis evals samples ID [--row N] [--json]
    basis jobs export JOB CHECKPOINT [--name NAME] [--adapter]
    basis models list [--json] | get NAME | delete NAME | pull ORG/NAME[@REVISION] [--name N] [--no-wait]

`admin` talks to the database in `BASIS_DATABASE_URL` (cli/admin.py); `up` and `worker` start the
server packages (cli/up.py); everything else goes through the shared client (`client/`) to the API
at `BASIS_API_URL` with `BASIS_API_KEY`, exactly as the dashboard does (cli/rest.py). Each module
adds its subcommands with `register(subparsers)`; every parser sets `func=callable(args) -> int |
None`. The server packages are imported inside the commands, so `basis jobs list` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from cli import admin, rest, up
from cli.errors import CliError
from client import ApiError, Unauthorized


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="basis", description="BASIS platform command line.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    admin.register(commands)
    rest.register(commands)
    up.register(commands)
    return parser


def main(argv: list[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Entry point of `basis`; `http` lets tests point the client at an in-process app."""
    args = build_parser().parse_args(argv)
    args.http = http
    try:
        return args.func(args) or 0
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `basis jobs get ID | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except Unauthorized as exc:
        if not os.environ.get("BASIS_API_KEY"):
            print("error: no API key: set BASIS_API_KEY (`basis admin create-key --name NAME` "
                  "prints one; `make run` / `basis up --demo` print the demo user's)", file=sys.stderr)
        elif exc.status == 403:  # the key is good; its user may not do this (an admin's route)
            print(f"error: forbidden: {exc}", file=sys.stderr)
        else:
            print(f"error: BASIS_API_KEY was refused ({exc}); create a new key with "
                  "`basis admin create-key --name NAME`", file=sys.stderr)
        return 1
    except ApiError as exc:  # the API's code, message and the field at fault, on one line
        print(f"error: {f'{exc.code}: ' if exc.code else ''}{exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
