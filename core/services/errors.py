"""Domain errors: what went wrong, in words a user can act on, and which input (`param`) caused it.

The HTTP status lives here too (`status`) so the mapping is one table, not a chain of excepts.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class: `code` is machine-readable, `message` human-readable, `param` the input at fault."""

    status: int = 400
    code: str = "invalid_request"

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class Invalid(DomainError):
    """The request is well formed but its content is wrong (bad config field, bad JSONL line)."""

    status = 422
    code = "invalid_request"


class NotFound(DomainError):
    """No such resource, or it belongs to another owner (indistinguishable on purpose)."""

    status = 404
    code = "not_found"


class Forbidden(DomainError):
    """The caller may see the resource but not do this to it (delete a shared model, not admin)."""

    status = 403
    code = "forbidden"


class Conflict(DomainError):
    """The resource's state forbids the action (cancel a finished job, delete a dataset in use)."""

    status = 409
    code = "conflict"


class TooLarge(DomainError):
    """The upload or request body exceeds a configured limit."""

    status = 413
    code = "too_large"


class QuotaExceeded(DomainError):
    """The user is at a per-user quota the administrator set."""

    status = 429
    code = "quota_exceeded"


class InsufficientStorage(DomainError):
    """The storage volume is below the administrator's free-space floor."""

    status = 507
    code = "insufficient_storage"


class UnsupportedMediaType(DomainError):
    """The upload's content type is not one we accept."""

    status = 415
    code = "unsupported_media_type"


class Unauthorized(DomainError):
    """Missing, malformed, unknown or revoked API key."""

    status = 401
    code = "unauthorized"


class Upstream(DomainError):
    """A server we depend on (the Hugging Face hub) failed or could not be reached."""

    status = 502
    code = "upstream_error"
