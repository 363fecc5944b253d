"""Retention: delete old history and strip stored raw messages, in short batches.

The tracker rows (:class:`~bounce_tracker.models.EmailAddressTracker`) are the
state; the per-bounce :class:`~bounce_tracker.models.BounceEvent` rows and the
:class:`~bounce_tracker.models.UnmatchedMessage` rows are history. Nothing here
touches a tracker row: ``bounce_count``, ``last_bounce`` and the other counters,
and the suppression mark, stay as they are, so the policy (which reads only the
tracker row) decides exactly as before.

Every function works in batches of at most ``batch_size`` rows: one query selects
the primary keys of the next batch (in primary-key order), one statement deletes or
updates exactly those keys and commits on its own. Row locks are held for one short
statement, so handlers recording new bounces meanwhile never wait long. Call them
outside any ``transaction.atomic()`` block: inside one, every batch would join the
caller's transaction and hold its locks until the end.

Used by ``manage.py prune_bounce_events``; usable from code too (e.g. a Celery
task calling :func:`prune`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from time import monotonic

from django.db.models import Count, IntegerField, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from bounce_tracker.core.db import chunk_size, retry_deadlocks
from bounce_tracker.models import BounceEvent, UnmatchedMessage

logger = logging.getLogger("bounce_tracker")

#: The shortest retention (in days) for deleting rows, unless explicitly allowed.
#: A deleted row's fingerprint no longer recognises a late redelivery of the same
#: message, which would then count a second time. Postfix keeps a message it could
#: not deliver for ``maximal_queue_lifetime`` (5 days by default); other MTAs
#: retry for 4 to 5 days. Seven days is longer than all of them.
MIN_RETENTION_DAYS = 7
#: Rows per batch (one SELECT of primary keys, one DELETE or UPDATE).
DEFAULT_BATCH_SIZE = 1000

#: What an action reports after every batch: its name and the counts so far.
Progress = Callable[[str, "Counts"], None]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

ReceivedModel = type[BounceEvent] | type[UnmatchedMessage]


class RetentionError(ValueError):
    """An argument no retention run accepts (e.g. fewer days than the minimum)."""


@dataclass
class Counts:
    """Rows deleted or stripped by one action, and the raw-message bytes that freed."""

    rows: int = 0
    bytes: int = 0

    def add(self, rows: int, freed: int) -> None:
        self.rows += rows
        self.bytes += freed


@dataclass
class PruneReport:
    """What :func:`prune` did (or, in a dry run, would do)."""

    #: The moment the cutoffs are counted from.
    now: datetime
    dry_run: bool = False
    events_deleted: Counts | None = None
    unmatched_deleted: Counts | None = None
    raw_stripped: Counts | None = None
    raw_capped: Counts | None = None
    #: Stored raw-message bytes (events and unmatched mail) before the cap ran.
    raw_bytes_before_cap: int | None = None
    #: The same after it (without what arrived meanwhile).
    raw_bytes_after_cap: int | None = None
    seconds: float = 0.0

    @property
    def bytes_freed(self) -> int:
        parts = (self.events_deleted, self.unmatched_deleted, self.raw_stripped, self.raw_capped)
        return sum(part.bytes for part in parts if part is not None)


def parse_size(text: str) -> int:
    """Bytes from ``"500M"``, ``"2G"``, ``"1.5g"``, ``"64KiB"`` or ``"1048576"`` (K = 1024)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise RetentionError(
            f"{text!r} is not a size: use a number of bytes, optionally followed by K, M, G or T."
        )
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


def check_days(days: int, *, allow_short_retention: bool = False, option: str = "days") -> None:
    """Raise :class:`RetentionError` unless rows older than ``days`` may be deleted."""
    if days < 0:
        raise RetentionError(f"{option} must be 0 or more, not {days}.")
    if days < MIN_RETENTION_DAYS and not allow_short_retention:
        raise RetentionError(
            f"{option} {days} is shorter than the minimum of {MIN_RETENTION_DAYS} days: "
            "a deleted message's fingerprint no longer recognises a late redelivery, "
            "which would then count again. Pass --allow-short-retention "
            "(allow_short_retention=True) to do it anyway."
        )


def cutoff_for(days: int, now: datetime | None = None) -> datetime:
    """The moment ``days`` days before ``now``: rows received before it are "older"."""
    return (now or timezone.now()) - timedelta(days=days)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise RetentionError(f"The batch size must be at least 1, not {batch_size}.")


def _batch_limit(batch_size: int) -> int:
    _check_batch_size(batch_size)
    return min(batch_size, chunk_size())  # stays under the database's bind-parameter limit


def _stored_bytes() -> Coalesce:
    return Coalesce(Length("raw_message"), 0, output_field=IntegerField())


def _count_and_bytes(rows: QuerySet[BounceEvent] | QuerySet[UnmatchedMessage]) -> Counts:
    totals = rows.aggregate(rows=Count("pk"), bytes=Sum(_stored_bytes()))
    return Counts(rows=int(totals["rows"] or 0), bytes=int(totals["bytes"] or 0))


def _delete(model: ReceivedModel, keys: list[int]) -> int:
    """Delete the rows with these keys (one statement, its own transaction)."""
    deleted, _ = model.objects.filter(pk__in=keys).delete()
    return deleted


def _strip(model: ReceivedModel, keys: list[int]) -> int:
    """Empty the raw message of the rows with these keys; ``raw_size`` stays."""
    return model.objects.filter(pk__in=keys).update(raw_message=b"", raw_truncated=True)


def _walk(
    model: ReceivedModel,
    cutoff: datetime,
    *,
    delete: bool,
    batch_size: int,
    dry_run: bool,
    progress: Progress | None,
    label: str,
) -> Counts:
    """Delete (or strip the raw message of) rows received before ``cutoff``, in pk order."""
    limit = _batch_limit(batch_size)
    old = model.objects.filter(received_at__lt=cutoff)
    if not delete:
        old = old.annotate(stored=_stored_bytes()).filter(stored__gt=0)
    if dry_run:
        counts = _count_and_bytes(old)
        if progress:
            progress(label, counts)
        return counts
    counts = Counts()
    # The newest old row bounds the key range: the last batch stops there instead of
    # scanning every newer row, and rows that arrive meanwhile are never looked at.
    last_pk = old.aggregate(last=Max("pk"))["last"]
    after = 0
    while last_pk is not None and after < last_pk:
        batch = list(
            old.filter(pk__gt=after, pk__lte=last_pk)
            .order_by("pk")
            .values_list("pk", _stored_bytes())[:limit]
        )
        if not batch:
            break
        keys = [pk for pk, _ in batch]
        after = keys[-1]
        done = retry_deadlocks(partial(_delete if delete else _strip, model, keys))
        counts.add(done, sum(size for _, size in batch))
        if progress:
            progress(label, counts)
    return counts


def delete_events_older_than(
    days: int,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    allow_short_retention: bool = False,
    progress: Progress | None = None,
) -> Counts:
    """Delete bounce events received more than ``days`` days before ``now``.

    A row received exactly at the cutoff is kept. Tracker rows are not changed.
    """
    check_days(days, allow_short_retention=allow_short_retention, option="--older-than")
    return _walk(
        BounceEvent,
        cutoff_for(days, now),
        delete=True,
        batch_size=batch_size,
        dry_run=dry_run,
        progress=progress,
        label="bounce events deleted",
    )


def delete_unmatched_older_than(
    days: int,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    allow_short_retention: bool = False,
    progress: Progress | None = None,
) -> Counts:
    """Delete unmatched messages received more than ``days`` days before ``now``."""
    check_days(days, allow_short_retention=allow_short_retention, option="--unmatched-older-than")
    return _walk(
        UnmatchedMessage,
        cutoff_for(days, now),
        delete=True,
        batch_size=batch_size,
        dry_run=dry_run,
        progress=progress,
        label="unmatched messages deleted",
    )


def strip_raw_older_than(
    days: int,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Counts:
    """Empty the stored raw message of bounce events received more than ``days`` days ago.

    The event row stays (kind, status, diagnostic, fingerprint…), with
    ``raw_truncated`` set and ``raw_size`` (the original size) unchanged. The
    fingerprint is kept, so no minimum applies.
    """
    if days < 0:
        raise RetentionError(f"--strip-raw-older-than must be 0 or more, not {days}.")
    return _walk(
        BounceEvent,
        cutoff_for(days, now),
        delete=False,
        batch_size=batch_size,
        dry_run=dry_run,
        progress=progress,
        label="raw messages stripped",
    )


def stored_raw_bytes() -> int:
    """Bytes of raw message stored now, bounce events and unmatched mail together."""
    return sum(
        _count_and_bytes(model.objects.all()).bytes for model in (BounceEvent, UnmatchedMessage)
    )


def _oldest_with_raw(
    model: ReceivedModel, cursor: tuple[datetime, int] | None, limit: int
) -> list[tuple[datetime, int, int]]:
    """``(received_at, pk, stored bytes)`` of the oldest rows still holding a raw message."""
    rows = model.objects.annotate(stored=_stored_bytes()).filter(stored__gt=0)
    if cursor is not None:
        moment, pk = cursor
        rows = rows.filter(Q(received_at__gt=moment) | Q(received_at=moment, pk__gt=pk))
    return list(
        rows.order_by("received_at", "pk").values_list("received_at", "pk", "stored")[:limit]
    )


def cap_raw_bytes(
    max_bytes: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> tuple[Counts, int, int]:
    """Strip raw messages, oldest first, until the stored raw bytes are at most ``max_bytes``.

    Bounce events and unmatched mail count together and are stripped in the order
    they were received. Returns the counts and the stored bytes before and after
    (messages arriving meanwhile are left to the next run).
    """
    if max_bytes < 0:
        raise RetentionError(f"--max-raw-bytes must be 0 or more, not {max_bytes}.")
    limit = _batch_limit(batch_size)
    before = stored_raw_bytes()
    excess = before - max_bytes
    counts = Counts()
    cursors: dict[ReceivedModel, tuple[datetime, int] | None] = {
        BounceEvent: None,
        UnmatchedMessage: None,
    }
    while counts.bytes < excess:
        # The oldest ``limit`` rows of both tables together are among the oldest
        # ``limit`` of each.
        candidates = sorted(
            (
                (moment, index, pk, size, model)
                for index, model in enumerate(cursors)
                for moment, pk, size in _oldest_with_raw(model, cursors[model], limit)
            ),
            key=lambda candidate: candidate[:3],
        )[:limit]
        if not candidates:
            break
        chosen: dict[ReceivedModel, list[int]] = {model: [] for model in cursors}
        freed = 0
        for moment, _, pk, size, model in candidates:
            chosen[model].append(pk)
            cursors[model] = (moment, pk)
            freed += size
            if counts.bytes + freed >= excess:
                break
        done = 0
        for model, keys in chosen.items():
            if keys and not dry_run:
                done += retry_deadlocks(partial(_strip, model, keys))
            else:
                done += len(keys)
        counts.add(done, freed)
        if progress:
            progress("raw messages stripped for the byte cap", counts)
    return counts, before, before - counts.bytes


def prune(
    *,
    older_than: int | None = None,
    unmatched_older_than: int | None = None,
    strip_raw_older_than_days: int | None = None,
    max_raw_bytes: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    allow_short_retention: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> PruneReport:
    """Run every action given (deletes first, then stripping, then the byte cap).

    All arguments are checked before anything is deleted; at least one action is
    required. The cutoffs are all counted from one ``now``.
    """
    for days, option in (
        (older_than, "--older-than"),
        (unmatched_older_than, "--unmatched-older-than"),
    ):
        if days is not None:
            check_days(days, allow_short_retention=allow_short_retention, option=option)
    if strip_raw_older_than_days is not None and strip_raw_older_than_days < 0:
        raise RetentionError(
            f"--strip-raw-older-than must be 0 or more, not {strip_raw_older_than_days}."
        )
    if max_raw_bytes is not None and max_raw_bytes < 0:
        raise RetentionError(f"--max-raw-bytes must be 0 or more, not {max_raw_bytes}.")
    _check_batch_size(batch_size)
    if all(
        value is None
        for value in (older_than, unmatched_older_than, strip_raw_older_than_days, max_raw_bytes)
    ):
        raise RetentionError(
            "Nothing to do: give --older-than, --unmatched-older-than, "
            "--strip-raw-older-than or --max-raw-bytes."
        )
    started = monotonic()
    now = now or timezone.now()
    report = PruneReport(now=now, dry_run=dry_run)
    if older_than is not None:
        report.events_deleted = delete_events_older_than(
            older_than,
            now=now,
            batch_size=batch_size,
            dry_run=dry_run,
            allow_short_retention=allow_short_retention,
            progress=progress,
        )
    if unmatched_older_than is not None:
        report.unmatched_deleted = delete_unmatched_older_than(
            unmatched_older_than,
            now=now,
            batch_size=batch_size,
            dry_run=dry_run,
            allow_short_retention=allow_short_retention,
            progress=progress,
        )
    if strip_raw_older_than_days is not None:
        report.raw_stripped = strip_raw_older_than(
            strip_raw_older_than_days,
            now=now,
            batch_size=batch_size,
            dry_run=dry_run,
            progress=progress,
        )
    if max_raw_bytes is not None:
        report.raw_capped, report.raw_bytes_before_cap, report.raw_bytes_after_cap = cap_raw_bytes(
            max_raw_bytes, batch_size=batch_size, dry_run=dry_run, progress=progress
        )
    report.seconds = monotonic() - started
    logger.info(
        "Retention%s: %d bounce event(s) and %d unmatched message(s) deleted, %d raw "
        "message(s) stripped, %d bytes of raw messages freed in %.2f s.",
        " (dry run, nothing changed)" if dry_run else "",
        _rows(report.events_deleted),
        _rows(report.unmatched_deleted),
        _rows(report.raw_stripped) + _rows(report.raw_capped),
        report.bytes_freed,
        report.seconds,
    )
    return report


def _rows(counts: Counts | None) -> int:
    return counts.rows if counts else 0
