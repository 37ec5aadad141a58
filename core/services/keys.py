"""Users and API keys.

A key is `bk_` + 43 url-safe characters (256 random bits). We store its SHA-256 and its first
11 characters (`prefix`) for display and revocation; the key itself is shown once, at creation.
SHA-256 without salt is enough for a random 256-bit secret: there is no dictionary to attack.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from core.models import ApiKey, User, utcnow
from core.services.errors import Invalid, NotFound

KEY_PREFIX = "bk_"
PREFIX_LEN = 11


def hash_key(secret: str) -> str:
    """Hex SHA-256 of a key; what the database stores."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def get_or_create_user(session: Session, name: str) -> User:
    """The user called `name`, created if missing."""
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("user name must be 1-200 characters", param="name")
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name)
        session.add(user)
        session.flush()
    return user


def create_key(session: Session, user_name: str, *, admin: bool = False) -> tuple[ApiKey, str]:
    """A new key for `user_name` (user created if needed; made an admin when `admin`, never
    demoted here); returns the row and the secret."""
    user = get_or_create_user(session, user_name)
    if admin:
        user.is_admin = True
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(user_id=user.id, prefix=secret[:PREFIX_LEN], key_hash=hash_key(secret))
    session.add(key)
    session.flush()
    return key, secret


def revoke_key(session: Session, prefix: str) -> int:
    """Revoke every active key whose display prefix is `prefix`; returns how many."""
    if len(prefix) < PREFIX_LEN:
        # A short prefix could match many keys by accident.
        raise Invalid(f"give the full {PREFIX_LEN}-character key prefix", param="prefix")
    # Session.execute is typed as returning Result; for an UPDATE it is a CursorResult (rowcount).
    result = cast(CursorResult[Any], session.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix[:PREFIX_LEN], ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ))
    if result.rowcount == 0:
        raise NotFound(f"no active key with prefix {prefix[:PREFIX_LEN]!r}", param="prefix")
    return result.rowcount


def set_admin(session: Session, user_name: str, admin: bool = True) -> User:
    """Make an existing user an admin (pull and delete shared models), or revoke that."""
    user = session.scalar(select(User).where(User.name == user_name.strip()))
    if user is None:
        raise NotFound(f"no user {user_name!r}; `basis admin create-key --name NAME --admin` creates one",
                       param="name")
    user.is_admin = admin
    session.flush()
    return user


def list_keys(session: Session) -> list[tuple[ApiKey, User]]:
    """Every key with its user, newest first."""
    rows = session.execute(select(ApiKey, User).join(User).order_by(ApiKey.id.desc()))
    return [(key, user) for key, user in rows]


def authenticate(session: Session, secret: str | None) -> User | None:
    """The owner of an active key `secret`, or None."""
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    return session.scalar(
        select(User)
        .join(ApiKey, ApiKey.user_id == User.id)
        .where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    )
