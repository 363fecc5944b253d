"""Retention: delete old history and strip stored raw messages, in short batches.

The tracker rows (:class:`~bounce_tracker.models.EmailAddressTracker`) are the
state; the per-bounce :class:`~bounce_tracker.models.BounceEvent` rows and the
:class:`~bounce_tracker.models.UnmatchedMessage` rows are history. Nothing here
touches a tracker row: ``bounce_count``, ``last_bounce`` and the other counters,
and the suppression mark, stay as they are, so the policy (which reads only the
tracker row) decides exactly as before.

Every function works in batches of at most ``batch_size`` rows, through one walker:
one query selects the primary keys of the next batch (in primary-key order for the
actions by age, oldest first across both tables for the byte cap), one statement
per table deletes or updates exactly those keys and commits on its own. Row locks
are held for one short statement, so handlers recording new bounces meanwhile never
wait long. A dry run walks the same batches and changes nothing. Call them outside
any ``transaction.atomic()`` block: inside one, every batch would join the caller's
transaction and hold its locks until the end.

Errors are :class:`RetentionError`, whose ``argument`` names the argument at fault
as :func:`prune` calls it; the messages name no command-line option.

Used by ``manage.py prune_bounce_events``; usable from code too (e.g. a Celery
task calling :func:`prune`). A little over 500 lines, kept whole: every action is a
use of the one walker, and splitting them from it would scatter one mechanism.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from time import monotonic
from typing import TypedDict, Unpack

from django.db.models import IntegerField, Max, Q, Sum
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
    """An argument no retention run accepts (e.g. fewer days than the minimum).

    ``argument`` names it as :func:`prune` calls it (``"older_than"``,
    ``"unmatched_older_than"``, ``"strip_raw_older_than_days"``, ``"max_raw_bytes"``,
    ``"batch_size"``), or is None; the message names no command-line option.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class ShortRetentionError(RetentionError):
    """Deleting rows younger than :data:`MIN_RETENTION_DAYS` without ``allow_short_retention``."""


@dataclass
class Counts:
    """Rows deleted or stripped by one action, and the raw-message bytes that freed."""

    rows: int = 0
    bytes: int = 0

    def add(self, rows: int, freed: int) -> None:
        """Count one more batch."""
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
    def parts(self) -> tuple[Counts | None, ...]:
        """The counts of each action, None for an action not asked for."""
        return (self.events_deleted, self.unmatched_deleted, self.raw_stripped, self.raw_capped)

    @property
    def rows_changed(self) -> int:
        """Rows deleted or stripped by all actions together (or that would be)."""
        return sum(part.rows for part in self.parts if part is not None)

    @property
    def bytes_freed(self) -> int:
        """Raw-message bytes freed by all actions together (or that would be)."""
        return sum(part.bytes for part in self.parts if part is not None)


def parse_size(text: str) -> int:
    """Bytes from ``"500M"``, ``"2G"``, ``"1.5g"``, ``"64KiB"`` or ``"1048576"`` (K = 1024)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise RetentionError(
            f"{text!r} is not a size: use a number of bytes, optionally followed by K, M, G or T."
        )
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


# --- what each action does to a batch of rows ------------------------------------------


def _delete(model: ReceivedModel, keys: list[int]) -> int:
    """Delete the rows with these keys (one statement, its own transaction)."""
    deleted, _ = model.objects.filter(pk__in=keys).delete()
    return deleted


def _strip(model: ReceivedModel, keys: list[int]) -> int:
    """Empty the raw message of the rows with these keys; ``raw_size`` stays."""
    return model.objects.filter(pk__in=keys).update(raw_message=b"", raw_truncated=True)


@dataclass(frozen=True)
class _Action:
    """One retention action by age: which rows, what happens to them, how it is named."""

    #: :func:`prune`'s keyword for the action's days.
    argument: str
    model: ReceivedModel
    change: Callable[[ReceivedModel, list[int]], int]
    #: The progress label.
    label: str
    #: What the days apply to, for messages.
    subject: str

    @property
    def deletes(self) -> bool:
        return self.change is _delete


_DELETE_EVENTS = _Action(
    "older_than", BounceEvent, _delete, "bounce events deleted", "bounce events"
)
_DELETE_UNMATCHED = _Action(
    "unmatched_older_than",
    UnmatchedMessage,
    _delete,
    "unmatched messages deleted",
    "unmatched mail",
)
_STRIP_EVENTS = _Action(
    "strip_raw_older_than_days", BounceEvent, _strip, "raw messages stripped", "raw messages"
)


# --- checks -----------------------------------------------------------------------------


def _check_days(action: _Action, days: int, *, allow_short_retention: bool) -> None:
    if days < 0:
        raise RetentionError(
            f"The retention of {action.subject} must be 0 or more days, not {days}.",
            argument=action.argument,
        )
    if action.deletes and days < MIN_RETENTION_DAYS and not allow_short_retention:
        raise ShortRetentionError(
            f"The retention of {action.subject}, {days} days, is shorter than the minimum "
            f"of {MIN_RETENTION_DAYS} days: a deleted message's fingerprint no longer "
            "recognises a late redelivery, which would then count again.",
            argument=action.argument,
        )


def _check_max_bytes(max_bytes: int) -> None:
    if max_bytes < 0:
        raise RetentionError(
            f"The cap on stored raw-message bytes must be 0 or more, not {max_bytes}.",
            argument="max_raw_bytes",
        )


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise RetentionError(
            f"The batch size must be at least 1, not {batch_size}.", argument="batch_size"
        )


def cutoff_for(days: int, now: datetime | None = None) -> datetime:
    """The moment ``days`` days before ``now``: rows received before it are "older"."""
    return (now or timezone.now()) - timedelta(days=days)


# --- the walker -------------------------------------------------------------------------

#: One row to change: its model, its primary key and the raw-message bytes it holds.
_Row = tuple[ReceivedModel, int, int]


def _batch_limit(batch_size: int) -> int:
    _check_batch_size(batch_size)
    return min(batch_size, chunk_size())  # stays under the database's bind-parameter limit


def _stored_bytes() -> Coalesce:
    return Coalesce(Length("raw_message"), 0, output_field=IntegerField())


def _up_to(batch: list[_Row], wanted: int) -> list[_Row]:
    """The rows of ``batch`` up to and including the one that frees ``wanted`` bytes."""
    freed = 0
    for index, (_, _, size) in enumerate(batch):
        freed += size
        if freed >= wanted:
            return batch[: index + 1]
    return batch


def _walk(
    batches: Iterator[list[_Row]],
    change: Callable[[ReceivedModel, list[int]], int],
    *,
    dry_run: bool,
    progress: Progress | None,
    label: str,
    bytes_wanted: int | None = None,
) -> Counts:
    """Apply ``change`` to each batch of rows, each model's keys in one statement.

    Every action runs through here: the batches say which rows, in which order. With
    ``dry_run`` nothing changes and the rows are counted as they would be. With
    ``bytes_wanted`` the walk stops at the row that brings the bytes freed to it.
    """
    counts = Counts()
    while bytes_wanted is None or counts.bytes < bytes_wanted:
        batch = next(batches, None)
        if not batch:
            break
        if bytes_wanted is not None:
            batch = _up_to(batch, bytes_wanted - counts.bytes)
        keys: dict[ReceivedModel, list[int]] = {}
        for model, pk, _ in batch:
            keys.setdefault(model, []).append(pk)
        done = 0
        for model, model_keys in keys.items():
            if dry_run:
                done += len(model_keys)
            else:
                # Each statement commits on its own: locks last one short statement.
                done += retry_deadlocks(partial(change, model, model_keys))
        counts.add(done, sum(size for _, _, size in batch))
        if progress:
            progress(label, counts)
    return counts


def _older_than(
    model: ReceivedModel, cutoff: datetime, *, with_raw_only: bool, limit: int
) -> Iterator[list[_Row]]:
    """Batches of the rows received before ``cutoff``, in primary-key order."""
    old = model.objects.filter(received_at__lt=cutoff)
    if with_raw_only:
        old = old.annotate(stored=_stored_bytes()).filter(stored__gt=0)
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
            return
        after = batch[-1][0]
        yield [(model, pk, size) for pk, size in batch]


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


def _oldest_first(models: Sequence[ReceivedModel], limit: int) -> Iterator[list[_Row]]:
    """Batches of the rows of ``models`` that hold a raw message, oldest first, together."""
    cursors: dict[ReceivedModel, tuple[datetime, int] | None] = dict.fromkeys(models)
    while True:
        # The oldest ``limit`` rows of all tables together are among the oldest
        # ``limit`` of each.
        candidates = sorted(
            (
                (moment, index, pk, size, model)
                for index, model in enumerate(models)
                for moment, pk, size in _oldest_with_raw(model, cursors[model], limit)
            ),
            key=lambda candidate: candidate[:3],
        )[:limit]
        if not candidates:
            return
        for moment, _, pk, _, model in candidates:
            cursors[model] = (moment, pk)
        yield [(model, pk, size) for _, _, pk, size, model in candidates]


# --- the actions ----------------------------------------------------------------------


class WalkOptions(TypedDict, total=False):
    """The options every retention action by age takes, all optional."""

    #: The moment the cutoff is counted from (default: now).
    now: datetime | None
    #: Rows per batch (default :data:`DEFAULT_BATCH_SIZE`).
    batch_size: int
    #: Count what would change; change nothing.
    dry_run: bool
    #: Called after every batch with the action's label and its counts so far.
    progress: Progress | None


class DeleteOptions(WalkOptions, total=False):
    """The options of the actions that delete rows."""

    #: Allow fewer days than :data:`MIN_RETENTION_DAYS`.
    allow_short_retention: bool


def _run_older_than(
    action: _Action,
    days: int,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    allow_short_retention: bool = False,
    progress: Progress | None = None,
) -> Counts:
    _check_days(action, days, allow_short_retention=allow_short_retention)
    batches = _older_than(
        action.model,
        cutoff_for(days, now),
        with_raw_only=not action.deletes,
        limit=_batch_limit(batch_size),
    )
    return _walk(batches, action.change, dry_run=dry_run, progress=progress, label=action.label)


def delete_events_older_than(days: int, **options: Unpack[DeleteOptions]) -> Counts:
    """Delete bounce events received more than ``days`` days before ``now``.

    A row received exactly at the cutoff is kept. Tracker rows are not changed.
    Fewer than :data:`MIN_RETENTION_DAYS` days raise :class:`ShortRetentionError`
    unless ``allow_short_retention`` is true.
    """
    return _run_older_than(_DELETE_EVENTS, days, **options)


def delete_unmatched_older_than(days: int, **options: Unpack[DeleteOptions]) -> Counts:
    """Delete unmatched messages received more than ``days`` days before ``now``.

    Fewer than :data:`MIN_RETENTION_DAYS` days raise :class:`ShortRetentionError`
    unless ``allow_short_retention`` is true.
    """
    return _run_older_than(_DELETE_UNMATCHED, days, **options)


def strip_raw_older_than(days: int, **options: Unpack[WalkOptions]) -> Counts:
    """Empty the stored raw message of bounce events received more than ``days`` days ago.

    The event row stays (kind, status, diagnostic, fingerprint…), with
    ``raw_truncated`` set and ``raw_size`` (the original size) unchanged. The
    fingerprint is kept, so no minimum applies.
    """
    return _run_older_than(_STRIP_EVENTS, days, **options)


def stored_raw_bytes() -> int:
    """Bytes of raw message stored now, bounce events and unmatched mail together."""
    return sum(
        int(model.objects.aggregate(bytes=Sum(_stored_bytes()))["bytes"] or 0)
        for model in (BounceEvent, UnmatchedMessage)
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
    _check_max_bytes(max_bytes)
    limit = _batch_limit(batch_size)
    before = stored_raw_bytes()
    counts = Counts()
    if before > max_bytes:
        counts = _walk(
            _oldest_first((BounceEvent, UnmatchedMessage), limit),
            _strip,
            dry_run=dry_run,
            progress=progress,
            label="raw messages stripped for the byte cap",
            bytes_wanted=before - max_bytes,
        )
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
    by_age = [
        (action, days)
        for action, days in (
            (_DELETE_EVENTS, older_than),
            (_DELETE_UNMATCHED, unmatched_older_than),
            (_STRIP_EVENTS, strip_raw_older_than_days),
        )
        if days is not None
    ]
    for action, days in by_age:
        _check_days(action, days, allow_short_retention=allow_short_retention)
    if max_raw_bytes is not None:
        _check_max_bytes(max_raw_bytes)
    _check_batch_size(batch_size)
    if not by_age and max_raw_bytes is None:
        raise RetentionError(
            "Nothing to do: give at least one of older_than, unmatched_older_than, "
            "strip_raw_older_than_days or max_raw_bytes."
        )
    started = monotonic()
    now = now or timezone.now()
    report = PruneReport(now=now, dry_run=dry_run)
    options: DeleteOptions = {
        "now": now,
        "batch_size": batch_size,
        "dry_run": dry_run,
        "allow_short_retention": allow_short_retention,
        "progress": progress,
    }
    done = {action.argument: _run_older_than(action, days, **options) for action, days in by_age}
    report.events_deleted = done.get(_DELETE_EVENTS.argument)
    report.unmatched_deleted = done.get(_DELETE_UNMATCHED.argument)
    report.raw_stripped = done.get(_STRIP_EVENTS.argument)
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
