"""Database errors that mean "the values were wrong", translated into the service's own.

PostgreSQL refuses a statement for a value it cannot hold or a constraint it breaks; asyncpg
refuses an argument it cannot encode (a Python int beyond the column's integer type). When such
values come from a client that is the client's fault, and `acquire` raises these instead of the
driver's errors. Matched by class, which asyncpg derives from SQLSTATE; never by message text.

    class 22, data exception (out of range, NUL in text, datetime)   InvalidValueError
    23503 foreign key violation (names a row that does not exist)   UnknownReferenceError
    23514 check violation, 23502 not-null violation                 InvalidValueError
    23505 unique violation                                          ConflictError
    asyncpg's argument errors (an InterfaceError and ValueError)    InvalidValueError
"""

from __future__ import annotations

import asyncpg

from telematics.base.errors import ConflictError, InvalidRequestError, TelematicsError


class InvalidValueError(InvalidRequestError):
    """A value the database cannot hold or whose constraint it breaks.

    Attributes:
        sqlstate: The SQLSTATE, or None when the driver refused the argument itself.
        constraint: The constraint broken, when the database named one.
    """

    def __init__(self, message: str, sqlstate: str | None, constraint: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint


class UnknownReferenceError(InvalidValueError):
    """A value names a row that does not exist (a foreign key with nothing behind it)."""


_VALUE_ERRORS = (asyncpg.DataError, asyncpg.CheckViolationError, asyncpg.NotNullViolationError)


def _described(exc: asyncpg.PostgresError) -> str:
    # The server's detail names the column and value ("Key (engineer_id)=(X) is not present
    # in table "engineers"."): shown to the client, never matched on.
    detail = getattr(exc, "detail", None)
    constraint = getattr(exc, "constraint_name", None)
    parts = [str(exc.args[0]) if exc.args else type(exc).__name__]
    if detail:
        parts.append(str(detail))
    if constraint:
        parts.append(f"(constraint {constraint})")
    return " ".join(parts)


def client_fault(exc: BaseException) -> TelematicsError | None:
    """The service error for a database error caused by the values sent, or None."""
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        # asyncpg's own DataError: an argument that does not fit its parameter's type.
        return InvalidValueError(f"a value does not fit: {exc}", None, None)
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    constraint = getattr(exc, "constraint_name", None)
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return UnknownReferenceError(_described(exc), sqlstate, constraint)
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(str(getattr(exc, "table_name", None) or "row"), constraint or "")
    if isinstance(exc, _VALUE_ERRORS):
        return InvalidValueError(_described(exc), sqlstate, constraint)
    return None
