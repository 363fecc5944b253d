"""Database helpers every room uses: retry a deadlock victim, chunk an ``IN`` list.

Part of the shared core: it imports nothing from the rooms.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import OperationalError, connection

#: Addresses per ``IN (...)`` lookup: one query for any batch up to this size. Under
#: SQLite's 32,766 and PostgreSQL's 65,535 bind parameters; MySQL has no such limit.
CHUNK_SIZE = 30_000
#: Attempts for a statement the database aborted as a deadlock victim. On a Galera
#: cluster a conflict with another node's write is reported as a deadlock too, and a
#: node that is behind in applying the others' writes aborts the same statement again
#: until it has caught up: five attempts 10-40 ms apart lost a send's counts there
#: (tests/test_galera.py); ten, backing off to 0.2 s, span about a second.
DEADLOCK_ATTEMPTS = 10

logger = logging.getLogger("bounce_tracker")
T = TypeVar("T")


def is_deadlock(exc: OperationalError) -> bool:
    """True for MySQL/MariaDB 1213 (deadlock) and PostgreSQL 40P01 (deadlock_detected)."""
    cause = exc.__cause__
    if cause is not None and getattr(cause, "sqlstate", None) == "40P01":
        return True
    return bool(exc.args) and exc.args[0] == 1213


def retry_deadlocks(operation: Callable[[], T]) -> T:
    """Run one statement, again when the database chose it as a deadlock victim.

    Concurrent senders inserting overlapping new addresses can deadlock on MariaDB's
    unique-index locks; on a Galera cluster, a write that conflicts with another
    node's is aborted with the same error. Outside a transaction each statement
    commits on its own and a deadlock victim is rolled back whole, so running it
    again is safe and counts nothing twice. Inside the caller's ``atomic()`` block
    the whole transaction is gone, so the error is raised for the caller to retry.
    Waits :func:`retry_delay` between attempts, :data:`DEADLOCK_ATTEMPTS` at most.
    """
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return operation()
        except OperationalError as exc:
            if not is_deadlock(exc) or connection.in_atomic_block or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.info("Deadlock on attempt %d, retrying: %s", attempt, exc)
            time.sleep(retry_delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed ``attempt``: 10 ms doubling up to 0.2 s, +-50 % jitter.

    The jitter keeps two writers that keep aborting each other from retrying in step.
    """
    return min(0.01 * 2.0 ** (attempt - 1), 0.2) * random.uniform(0.5, 1.5)


def chunk_size() -> int:
    """:data:`CHUNK_SIZE`, or less where this SQLite library allows fewer parameters."""
    if connection.vendor != "sqlite":
        return CHUNK_SIZE
    import sqlite3

    connection.ensure_connection()
    limit: int = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(CHUNK_SIZE, limit - 10))


def chunks(items: Sequence[Any], size: int | None = None) -> Iterator[Sequence[Any]]:
    size = size or chunk_size()
    for start in range(0, len(items), size):
        yield items[start : start + size]
