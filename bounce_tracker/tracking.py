"""The database side of sending: find or create tracker rows in bulk, count sends.

Both functions touch the database a fixed number of times per batch (one query
per :data:`CHUNK_SIZE` addresses), never once per recipient.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import OperationalError, connection
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from bounce_tracker.conf import TrackerSettings
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.verp import address_token, encode_local_part

#: Addresses per ``IN (...)`` lookup: one query for any batch up to this size. Under
#: SQLite's 32,766 and PostgreSQL's 65,535 bind parameters; MySQL has no such limit.
CHUNK_SIZE = 30_000
#: Attempts for a statement the database aborted as a deadlock victim.
DEADLOCK_ATTEMPTS = 5

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
    unique-index locks. Outside a transaction each statement commits on its own and a
    deadlock victim is rolled back whole, so running it again is safe and counts
    nothing twice. Inside the caller's ``atomic()`` block the whole transaction is
    gone, so the error is raised for the caller to retry.
    """
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            return operation()
        except OperationalError as exc:
            if not is_deadlock(exc) or connection.in_atomic_block or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.info("Deadlock on attempt %d, retrying: %s", attempt, exc)
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def chunk_size() -> int:
    """:data:`CHUNK_SIZE`, or less where this SQLite library allows fewer parameters."""
    if connection.vendor != "sqlite":
        return CHUNK_SIZE
    import sqlite3

    connection.ensure_connection()
    limit: int = connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(CHUNK_SIZE, limit - 10))


def _chunks(items: Sequence[Any], size: int | None = None) -> Iterator[Sequence[Any]]:
    size = size or chunk_size()
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fetch(addresses: Sequence[str]) -> dict[str, EmailAddressTracker]:
    found: dict[str, EmailAddressTracker] = {}
    for chunk in _chunks(addresses):
        for tracker in EmailAddressTracker.objects.filter(email__in=chunk):
            found[tracker.email] = tracker
    return found


def ensure_trackers(
    addresses: Iterable[str], tracker_settings: TrackerSettings
) -> dict[str, EmailAddressTracker]:
    """The tracker rows for normalized ``addresses``, creating the missing ones.

    Safe under concurrent senders: rows are inserted with ``ignore_conflicts`` on the
    unique ``email`` column and then read back, so two processes sending to a new
    address at once end up with the same single row.
    """
    wanted = list(dict.fromkeys(addresses))
    trackers = _fetch(wanted)
    # Sorted, so concurrent senders take the unique-index locks in the same order.
    missing = sorted(address for address in wanted if address not in trackers)
    if missing:
        new_rows = [
            EmailAddressTracker(
                email=address, encoded_from=encode_local_part(address, tracker_settings)
            )
            for address in missing
        ]
        retry_deadlocks(
            lambda: EmailAddressTracker.objects.bulk_create(new_rows, ignore_conflicts=True)
        )
        trackers.update(_fetch(missing))
    still_missing = [address for address in missing if address not in trackers]
    if still_missing:
        # The only conflict left is on encoded_from: a readable local part already
        # taken by another address (e.g. imported from the legacy table). The token
        # form can't collide, so use it.
        head = f"{tracker_settings.verp_prefix}{tracker_settings.verp_delimiter}"
        token_rows = [
            EmailAddressTracker(
                email=address,
                encoded_from=head + address_token(address, tracker_settings.verp_secret),
            )
            for address in still_missing
        ]
        retry_deadlocks(
            lambda: EmailAddressTracker.objects.bulk_create(token_rows, ignore_conflicts=True)
        )
        trackers.update(_fetch(still_missing))
    unresolved = [address for address in wanted if address not in trackers]
    if unresolved:
        raise RuntimeError(f"Could not create tracker rows for {unresolved[:5]!r}.")
    return trackers


def record_sent(trackers: dict[str, EmailAddressTracker], accepted: Counter[str]) -> None:
    """Add the accepted copies to ``msg_count`` and stamp ``first_email``/``last_email``.

    One UPDATE per distinct number of copies per address (almost always one), using
    ``msg_count + n`` in SQL so concurrent senders never lose a count.
    """
    now = timezone.now()
    by_count: defaultdict[int, list[int]] = defaultdict(list)
    for address, copies in accepted.items():
        if copies:
            by_count[copies].append(trackers[address].pk)
    for copies, pks in by_count.items():
        pks.sort()  # the same row-lock order in every concurrent sender
        for chunk in _chunks(pks):
            _add_sent(list(chunk), copies, now)


def _add_sent(pks: list[int], copies: int, now: datetime) -> None:
    def update() -> int:
        return EmailAddressTracker.objects.filter(pk__in=pks).update(
            msg_count=F("msg_count") + copies,
            last_email=now,
            first_email=Coalesce(F("first_email"), Value(now, output_field=DateTimeField())),
        )

    retry_deadlocks(update)
