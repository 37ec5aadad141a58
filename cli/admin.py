"""`basis admin ...`: database administration, straight on `BASIS_DATABASE_URL` (no API).

Imports of core/ sit inside the commands so the REST client commands of `basis` start without
SQLAlchemy.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from cli.errors import CliError


def admin_create_key(args: argparse.Namespace) -> None:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from core.db import session_scope
    from core.services.keys import create_key

    name = _user_name(args)
    try:
        with session_scope() as session:
            key, secret = create_key(session, name, admin=args.admin)
    except (OperationalError, ProgrammingError) as exc:
        raise CliError(f"cannot create a key ({type(exc).__name__}); run `basis admin migrate` first?") from exc
    role = "admin " if args.admin else ""
    print(f"Created API key {key.prefix}... for {role}user {name!r}. It is shown only once:", file=sys.stderr)
    print(secret)


def _user_name(args: argparse.Namespace) -> str:
    if args.user and args.name and args.user != args.name:
        raise CliError(f"two user names given ({args.user!r} and --name {args.name!r}); give one")
    name = args.user or args.name
    if not name:
        raise CliError("give the user name: `basis admin create-key NAME` (or --name NAME)")
    return name


def admin_set_admin(args: argparse.Namespace) -> None:
    from core.db import session_scope
    from core.services.keys import set_admin

    with session_scope() as session:
        set_admin(session, args.user, not args.revoke)
    print(f"user {args.user!r} is {'no longer ' if args.revoke else 'now '}an admin")


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
            role = "admin" if user.is_admin else "user"
            print(f"{key.prefix}  {user.name:<20}  {role:<5}  {key.created_at:%Y-%m-%d %H:%M}  {state}")


def admin_migrate(args: argparse.Namespace) -> None:
    from core.db import migrate
    from core.settings import get_settings

    migrate(args.database_url or get_settings().database_url)
    print("database schema is at the latest revision")


def _domain_errors(command: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """A service's refusal (say, no key with that prefix) is a one-line CLI error."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> None:
        from core.services.errors import DomainError

        try:
            command(args)
        except DomainError as exc:
            raise CliError(exc.message) from exc
    return run


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`basis admin create-key | set-admin | revoke-key | list-keys | migrate`."""
    admin = commands.add_parser("admin", help="database administration").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = admin.add_parser("create-key", help="create an API key (and its user); prints the key last")
    p.add_argument("user", nargs="?", metavar="NAME", help="user name (or --name)")
    p.add_argument("--name", help="user name")
    p.add_argument("--admin", action="store_true",
                   help="make the user an administrator (may pull and delete shared models)")
    p.set_defaults(func=_domain_errors(admin_create_key))
    p = admin.add_parser("set-admin", help="make an existing user an administrator (or --revoke)")
    p.add_argument("user", metavar="NAME", help="user name")
    p.add_argument("--revoke", action="store_true", help="make the user an ordinary user again")
    p.set_defaults(func=_domain_errors(admin_set_admin))
    p = admin.add_parser("revoke-key", help="revoke the key with this prefix (as shown by list-keys)")
    p.add_argument("prefix")
    p.set_defaults(func=_domain_errors(admin_revoke_key))
    admin.add_parser("list-keys", help="list keys by prefix").set_defaults(func=_domain_errors(admin_list_keys))
    p = admin.add_parser("migrate", help="bring the database schema to the latest revision")
    p.add_argument("--database-url", help="default BASIS_DATABASE_URL")
    p.set_defaults(func=_domain_errors(admin_migrate))
