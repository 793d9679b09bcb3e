"""The service's exception tree. Library errors are translated into these at the boundary.

    TelematicsError
    ├── StoreUnavailableError   the database cannot be reached or failed transiently (retryable)
    │   └── CommandTimeoutError the work ran past the command timeout (retryable; or split it)
    ├── MigrationError          a migration failed or an applied one was edited
    ├── NotFoundError           a resource does not exist (HTTP 404)
    ├── ConflictError           a resource already exists (HTTP 409)
    ├── RefusedError            the resource's state refuses the request (HTTP 409)
    ├── InvalidRequestError     a request is well-formed but not acceptable (HTTP 422)
    ├── AuthError               missing or wrong credentials (HTTP 401)
    ├── ForbiddenError          the caller's role may not do this (HTTP 403)
    ├── RateLimitedError        the caller asked too often; retry after a while (HTTP 429)
    └── EmbeddedServiceError    an embedded default (database, broker) failed to start

Only the HTTP app maps these to status codes; routers and stores raise them.
"""

from __future__ import annotations


class TelematicsError(Exception):
    """Base of every error this package raises on purpose."""


class StoreUnavailableError(TelematicsError):
    """The database is unreachable, refused the connection or timed out. Worth retrying."""


class CommandTimeoutError(StoreUnavailableError):
    """The work ran past the command timeout or a server limit.

    Retrying the same work is right for small work on a slow database; a caller with large work
    (the gateway's batches) splits it instead.
    """


class MigrationError(TelematicsError):
    """A migration could not be applied, or an applied migration file changed since."""

    def __init__(self, version: str, message: str) -> None:
        super().__init__(f"migration {version}: {message}")
        self.version = version


class NotFoundError(TelematicsError):
    """A requested resource does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class ConflictError(TelematicsError):
    """A resource with the same identity already exists."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} already exists")
        self.kind = kind
        self.key = key


class RefusedError(TelematicsError):
    """The request conflicts with the resource's current state: the message says how
    ("cannot close: order is dispatched", "3 x P-1 at VAN-2: taken by other orders").
    """


class InvalidRequestError(TelematicsError):
    """A request parsed but cannot be honoured (e.g. an empty time range)."""


class AuthError(TelematicsError):
    """Credentials are missing or wrong."""


class ForbiddenError(TelematicsError):
    """The caller is known but its role may not do this."""


class RateLimitedError(TelematicsError):
    """The caller used up its request budget; `retry_after_s` says when the next one is there."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many requests: retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class EmbeddedServiceError(TelematicsError):
    """An embedded default service (database or broker) could not be started."""
