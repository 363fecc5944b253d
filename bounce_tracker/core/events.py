"""Record one event and update its tracker exactly once; keep and prune unmatched mail.

The shared core of every path into the tracker: the pipe and the LMTP receiver
(:mod:`bounce_tracker.receiving.receive`), the bounce mailbox, ESP events and
refusals at send time. Each path classifies and chooses the fingerprint that makes
two reports "the same event"; :func:`write_event` then writes the event and the
tracker's single UPDATE in one transaction, once per fingerprint, and sends the
signals after the commit.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models.signals import post_save, pre_save
from django.dispatch import Signal
from django.utils import timezone

from bounce_tracker.core.db import retry_deadlocks
from bounce_tracker.core.kinds import COUNTED_KINDS, SUPPRESSING_KINDS, BounceKind, Classification
from bounce_tracker.core.settings import TrackerSettings, get_settings
from bounce_tracker.core.signals import address_suppressed, bounce_recorded
from bounce_tracker.models import (
    BounceEvent,
    EmailAddressTracker,
    EventSource,
    SuppressionReason,
    UnmatchedMessage,
)

logger = logging.getLogger("bounce_tracker")

_SUPPRESSION_REASONS = {
    BounceKind.HARD: SuppressionReason.HARD_BOUNCE,
    BounceKind.COMPLAINT: SuppressionReason.COMPLAINT,
}


class Outcome(enum.StrEnum):
    """What became of a received message or event."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    UNMATCHED = "unmatched"
    #: The classifier failed on it: kept with unmatched mail, flagged, nothing counted.
    NEEDS_REVIEW = "needs_review"


@dataclass(frozen=True)
class ReceiveResult:
    """The outcome, the kind, and the event or unmatched row written (if any)."""

    outcome: Outcome
    kind: BounceKind
    event: BounceEvent | None = None
    unmatched: UnmatchedMessage | None = None


def received_fields(
    *,
    raw: bytes,
    raw_size: int,
    sender: str,
    recipient: str,
    classification: Classification,
    source: EventSource,
    tracker_settings: TrackerSettings,
    message_fingerprint: str,
) -> dict[str, object]:
    """The :class:`~bounce_tracker.models.ReceivedMessage` fields, matched or not.

    Text from the envelope and the message is made storable first (see
    :func:`clean_envelope` and :func:`storable_text`): a value a database rejects
    would fail every delivery of the message, and Postfix would retry it forever.
    """
    return {
        "envelope_sender": clean_envelope(sender)[:254],
        "envelope_recipient": clean_envelope(recipient)[:254],
        "status": storable_text(classification.status or "")[:16],
        "diagnostic": storable_text(classification.diagnostic)[:4000],
        "recipient": _failed_recipient(classification),
        "source": source,
        "fingerprint": message_fingerprint,
        "raw_message": raw[: tracker_settings.raw_message_max_bytes],
        "raw_size": raw_size,
        "raw_truncated": raw_size > tracker_settings.raw_message_max_bytes,
    }


def _failed_recipient(classification: Classification) -> str:
    for result in classification.recipients:
        if result.address:
            return clean_envelope(result.address)[:254]
    return ""


# NUL: PostgreSQL rejects it in text. Lone surrogates (undecodable bytes in argv,
# surrogateescape'd header bytes): no database driver can encode them.
_UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
# Envelope addresses never contain control characters; replacing them (rather than
# dropping them) keeps "bounces+to\x00ken" from matching the token "token".
_ENVELOPE_UNSAFE_RE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` with what no database accepts (NUL, lone surrogates) replaced by U+FFFD."""
    return _UNSTORABLE_RE.sub("\ufffd", text)


def clean_envelope(value: str) -> str:
    """An envelope sender or recipient as storable, matchable text.

    Bytes that were not UTF-8 (kept by Python as surrogate escapes in ``sys.argv``)
    and control characters (NUL, CR, LF, tab…) become U+FFFD; nothing is dropped.
    """
    with contextlib.suppress(UnicodeEncodeError):  # surrogates that don't escape bytes
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _ENVELOPE_UNSAFE_RE.sub("\ufffd", value)


def record_event(
    tracker: EmailAddressTracker,
    classification: Classification,
    *,
    source: EventSource,
    event_fingerprint: str,
    raw: bytes = b"",
    envelope_sender: str = "",
    envelope_recipient: str = "",
    tracker_settings: TrackerSettings | None = None,
) -> ReceiveResult:
    """Record a bounce that did not arrive as a message to the bounce address.

    For the other paths into the tracker: a refusal at send time, an ESP's event, a
    message read from a bounce mailbox. The caller classifies and chooses the
    fingerprint that makes two reports "the same event" (an ESP's event id, say);
    like a message to the bounce address, the event is recorded exactly once per
    fingerprint, with the same tracker updates, policy effects and signals.
    ``raw`` is what to keep as the event's raw message (a webhook payload, an SMTP
    reply), cut to ``RAW_MESSAGE_MAX_BYTES``.
    """
    tracker_settings = tracker_settings or get_settings()
    stored = received_fields(
        raw=raw,
        raw_size=len(raw),
        sender=envelope_sender,
        recipient=envelope_recipient,
        classification=classification,
        source=source,
        tracker_settings=tracker_settings,
        message_fingerprint=hashlib.sha256(event_fingerprint.encode()).hexdigest(),
    )
    return write_event(tracker, classification, stored)


def write_event(
    tracker: EmailAddressTracker, classification: Classification, stored: dict[str, object]
) -> ReceiveResult:
    """Write the event and update the tracker in one transaction, exactly once.

    ``stored`` are the event's fields from :func:`received_fields`; its fingerprint
    decides "the same event": a second write of it records nothing (``duplicate``).
    """
    result = _write_once("pk", tracker.pk, classification, stored, tracker)
    if result is None:  # deleted meanwhile: what the INSERT's foreign key would say
        raise IntegrityError(f"tracker {tracker.pk} does not exist")
    return result


def write_event_for(
    local_part: str, classification: Classification, stored: dict[str, object]
) -> ReceiveResult | None:
    """:func:`write_event` for the tracker whose ``encoded_from`` is ``local_part``.

    The receivers' hot path: the locking read that finds the row is the one that
    locks it, so a message costs one locking read, one UPDATE and one INSERT in one
    transaction. None (and nothing written) when no tracker has that local part.
    """
    return _write_once("encoded_from", local_part, classification, stored)


def _write_once(
    key: str,
    value: Any,
    classification: Classification,
    stored: dict[str, object],
    tracker: EmailAddressTracker | None = None,
) -> ReceiveResult | None:
    kind = classification.kind
    fields = {
        "kind": kind.value,
        "counted": kind in COUNTED_KINDS,
        "reporting_mta": storable_text(classification.reporting_mta)[:255],
        "original_message_id": storable_text(classification.original_message_id or "")[:255],
        "classifier_reason": storable_text(classification.reason)[:100],
        **stored,
    }

    def write() -> BounceEvent | None:
        with transaction.atomic():
            # Lock the tracker row first: the event INSERT takes a shared lock on it
            # for its foreign key, and two handlers for one address that each hold
            # that shared lock and then want the exclusive one deadlock on MariaDB.
            # Reading the clock after the lock is granted keeps last_bounce the
            # latest time however the handlers queue up. A duplicate's INSERT fails
            # and rolls the UPDATE back with it.
            sql = _statements(connection.vendor)
            with connection.cursor() as cursor:
                cursor.execute(sql.lock[key], [value])
                found = cursor.fetchone()
                if found is None:
                    return None
                tracker_pk = found[0]
                now = timezone.now()
                statement, params = sql.update(kind, now, classification)
                cursor.execute(statement, [*params, tracker_pk])
                event = BounceEvent(tracker_id=tracker_pk, received_at=now, **fields)
                _save_signal(pre_save, event)
                event.pk = sql.insert(cursor, event)
                event._state.adding = False
                event._state.db = connection.alias
                _save_signal(post_save, event, created=True)
            if tracker is not None:
                event.tracker = tracker
            if _has_listeners(kind):
                transaction.on_commit(lambda: _send_signals(tracker_pk, event, kind))
        return event

    try:
        event = retry_deadlocks(write)
    except IntegrityError:
        if BounceEvent.objects.filter(fingerprint=stored["fingerprint"]).exists():
            return ReceiveResult(Outcome.DUPLICATE, kind)
        raise
    if event is None:
        return None
    return ReceiveResult(Outcome.RECORDED, kind, event=event)


class _Statements:
    """The three statements of recording an event, as SQL written out once per process.

    The UPDATE: every kind records itself as ``last_event_kind``; counted kinds shift
    the bounce times, suppressing kinds set the suppression mark. Order matters:
    MySQL/MariaDB evaluate SET assignments left to right with the values already
    assigned, PostgreSQL and SQLite with the old ones. Assigning ``last_bounce3``
    before ``last_bounce2`` before ``last_bounce`` (and ``suppressed_at`` before
    ``suppressed_reason``) reads old values on all of them.

    The ORM would build (and resolve the expressions of) the same SELECT … FOR UPDATE,
    UPDATE and INSERT again for every message: about a millisecond of CPU each time,
    as much as classifying the message. The values go through each field's
    ``get_db_prep_save`` as they would in ``Model.save()``.
    """

    def __init__(self, vendor: str) -> None:
        def qn(name: object) -> str:
            return str(connection.ops.quote_name(str(name)))

        meta, event_meta = EmailAddressTracker._meta, BounceEvent._meta
        assert meta.pk is not None
        assert event_meta.pk is not None
        self.column = {field.name: qn(field.column) for field in meta.concrete_fields}
        table, pk = qn(meta.db_table), qn(meta.pk.column)
        suffix = " FOR UPDATE" if connection.features.has_select_for_update else ""
        # Written as the ORM writes it (table-qualified columns), so the statement
        # reads the same in the database's process list and slow log as before.
        self.lock = {
            key: f"SELECT {table}.{pk} FROM {table} WHERE {table}.{column} = %s{suffix}"
            for key, column in (("pk", pk), ("encoded_from", self.column["encoded_from"]))
        }
        self._update_head = f"UPDATE {table} SET "
        self._update_tail = f" WHERE {pk} = %s"
        self._updates: dict[tuple[bool, bool], str] = {}
        self.event_table, self.event_pk = str(event_meta.db_table), str(event_meta.pk.column)
        # (field, True when its value goes to the driver as it is: text, numbers,
        # booleans; dates and bytes go through get_db_prep_save like in Model.save()).
        self.event_fields = [
            (field, field.get_internal_type() in _PLAIN_FIELDS)
            for field in event_meta.concrete_fields
            if not field.primary_key
        ]
        self.insert_sql = "INSERT INTO {} ({}) VALUES ({})".format(
            qn(self.event_table),
            ", ".join(qn(field.column) for field, _ in self.event_fields),
            ", ".join(["%s"] * len(self.event_fields)),
        )
        self.returning = connection.features.can_return_columns_from_insert
        if self.returning:
            self.insert_sql += f" RETURNING {qn(self.event_pk)}"

    def update(
        self, kind: BounceKind, now: datetime, classification: Classification
    ) -> tuple[str, list[Any]]:
        """The UPDATE (its last parameter, the row's key, left to the caller)."""
        suppressing, counted = kind in SUPPRESSING_KINDS, kind in COUNTED_KINDS
        stamp = connection.ops.adapt_datetimefield_value(now)
        params: list[Any] = [kind.value]
        if suppressing:
            detail = storable_text(
                " ".join(filter(None, [classification.status, classification.diagnostic]))
            )
            params += [stamp, str(_SUPPRESSION_REASONS[kind]), detail[:255]]
        if counted:
            params += [stamp, stamp]
        statement = self._updates.get((suppressing, counted))
        if statement is None:
            c = self.column
            # In this order: see the class's docstring.
            sets = [f"{c['last_event_kind']} = %s"]
            if suppressing:
                sets += [
                    f"{c['suppressed_at']} = CASE WHEN {c['suppressed_reason']} = '' "
                    f"THEN %s ELSE {c['suppressed_at']} END",
                    f"{c['suppressed_reason']} = %s",
                    f"{c['suppressed_detail']} = %s",
                ]
            if counted:
                sets += [
                    f"{c['last_bounce3']} = {c['last_bounce2']}",
                    f"{c['last_bounce2']} = {c['last_bounce']}",
                    f"{c['last_bounce']} = %s",
                    f"{c['bounce_count']} = {c['bounce_count']} + 1",
                    f"{c['first_bounce']} = COALESCE({c['first_bounce']}, %s)",
                ]
            statement = self._update_head + ", ".join(sets) + self._update_tail
            self._updates[suppressing, counted] = statement
        return statement, params

    def insert(self, cursor: CursorWrapper, event: BounceEvent) -> int:
        """INSERT ``event``; its new primary key."""
        params = [
            getattr(event, field.attname)
            if plain
            else field.get_db_prep_save(getattr(event, field.attname), connection)
            for field, plain in self.event_fields
        ]
        cursor.execute(self.insert_sql, params)
        if self.returning:
            return int(cursor.fetchone()[0])
        return int(connection.ops.last_insert_id(cursor, self.event_table, self.event_pk))


def _save_signal(signal: Signal, event: BounceEvent, **extra: object) -> None:
    """``pre_save``/``post_save`` of the event, as ``Model.save()`` sends them (inside
    the transaction), for a site's receivers; nothing to do when there are none."""
    if signal.has_listeners(BounceEvent):
        signal.send(
            sender=BounceEvent,
            instance=event,
            raw=False,
            using=connection.alias,
            update_fields=None,
            **extra,
        )


_PLAIN_FIELDS = frozenset(
    ["CharField", "TextField", "BooleanField", "PositiveIntegerField", "IntegerField", "ForeignKey"]
)
_STATEMENTS: dict[str, _Statements] = {}


def _statements(vendor: str) -> _Statements:
    statements = _STATEMENTS.get(vendor)
    if statements is None:
        statements = _STATEMENTS[vendor] = _Statements(vendor)
    return statements


def _has_listeners(kind: BounceKind) -> bool:
    return bounce_recorded.has_listeners(BounceEvent) or (
        kind in SUPPRESSING_KINDS and address_suppressed.has_listeners(BounceEvent)
    )


def _send_signals(tracker_pk: int, event: BounceEvent, kind: BounceKind) -> None:
    suppressed = kind in SUPPRESSING_KINDS
    if not _has_listeners(kind):
        return  # no query for the updated row when nobody listens
    tracker = EmailAddressTracker.objects.get(pk=tracker_pk)
    _send_robust(bounce_recorded, tracker=tracker, event=event)
    if suppressed:
        _send_robust(address_suppressed, tracker=tracker, event=event)


def _send_robust(signal: Signal, **kwargs: object) -> None:
    for receiver, response in signal.send_robust(sender=BounceEvent, **kwargs):
        if isinstance(response, Exception):
            logger.error("%r receiver %r failed", signal, receiver, exc_info=response)


def store_unmatched(
    classification: Classification,
    stored: dict[str, object],
    reason: str,
    tracker_settings: TrackerSettings,
) -> ReceiveResult:
    """Keep a message that matches no tracked address (once per fingerprint).

    ``stored`` are its fields from :func:`received_fields`. Then only the newest
    ``UNMATCHED_MAX_MESSAGES`` are kept (:func:`prune_unmatched`).
    """
    unmatched = _create_unmatched(stored, reason=reason[:255], kind=classification.kind)
    if unmatched is None:
        return ReceiveResult(Outcome.DUPLICATE, classification.kind)
    prune_unmatched(tracker_settings.unmatched_max_messages, newest_pk=unmatched.pk)
    return ReceiveResult(Outcome.UNMATCHED, classification.kind, unmatched=unmatched)


#: What a flagged row keeps of the classifier's traceback (a TextField; bounded anyway).
MAX_CLASSIFIER_ERROR_CHARS = 20_000


def store_for_review(
    classification: Classification,
    stored: dict[str, object],
    tracker_settings: TrackerSettings,
) -> ReceiveResult:
    """Keep a message the classifier failed on, flagged for review; count nothing.

    ``classification.failed`` is set (see
    :func:`bounce_tracker.classify.classify_message`): there is no verdict to record,
    and guessing one could suppress a good address or miss a dead one. The message
    goes to unmatched mail, whatever address it reached, with ``needs_review`` set,
    the reason ``"classifier failed: …"``, no kind and the traceback in
    ``classifier_error``; no tracker changes. It is logged at ERROR on the
    ``bounce_tracker`` logger with the exception (``exc_info``), so the site's error
    reporting sees it. Staff attach it in the admin once the classifier is fixed.

    Exactly once, like any message: a second delivery of it (same fingerprint) stores
    nothing and is ``duplicate``, and so is one whose event was recorded before.
    Flagged rows are capped on their own (``UNMATCHED_MAX_MESSAGES`` of them): a flood
    of stray mail never pushes one out, and a flood of messages that all hit the same
    bug can't fill the disk.
    """
    kind = classification.kind
    if BounceEvent.objects.filter(fingerprint=stored["fingerprint"]).exists():
        return ReceiveResult(Outcome.DUPLICATE, kind)  # recorded before the classifier broke
    unmatched = _create_unmatched(stored, **_review_fields(classification))
    if unmatched is None:
        logger.warning(
            "The classifier failed on the message to <%s> (%s), which is stored already; "
            "nothing more stored.",
            stored["envelope_recipient"],
            classification.failed,
        )
        return ReceiveResult(Outcome.DUPLICATE, kind)
    _log_failure(classification, unmatched)
    prune_unmatched(
        tracker_settings.unmatched_max_messages, newest_pk=unmatched.pk, needs_review=True
    )
    return ReceiveResult(Outcome.NEEDS_REVIEW, kind, unmatched=unmatched)


def flag_for_review(unmatched: UnmatchedMessage, classification: Classification) -> None:
    """Flag a stored unmatched message the classifier failed on (again) for review.

    For a message classified again (attached by staff): the row gets the reason and
    traceback of this failure and ``needs_review``; the failure is logged at ERROR.
    """
    fields = _review_fields(classification)
    UnmatchedMessage.objects.filter(pk=unmatched.pk).update(**fields)
    for name, value in fields.items():
        setattr(unmatched, name, value)
    _log_failure(classification, unmatched)


def _review_fields(classification: Classification) -> dict[str, object]:
    """What a row flagged for review says: no kind, why, and the traceback."""
    details = classification.extra.get("traceback") or classification.failed
    return {
        "reason": storable_text(f"classifier failed: {classification.failed}")[:255],
        "kind": "",
        "needs_review": True,
        "classifier_error": storable_text(details)[-MAX_CLASSIFIER_ERROR_CHARS:],
    }


def _log_failure(classification: Classification, unmatched: UnmatchedMessage) -> None:
    logger.error(
        "The classifier failed on the message to <%s> (%s): kept for review as unmatched "
        "message #%d, nothing counted.",
        unmatched.envelope_recipient,
        classification.failed,
        unmatched.pk,
        exc_info=classification.error,  # the traceback, for the site's error reporting
    )


def _create_unmatched(stored: dict[str, object], **fields: object) -> UnmatchedMessage | None:
    """The new unmatched row, or None when its fingerprint is stored already."""
    try:
        with transaction.atomic():
            return UnmatchedMessage.objects.create(**fields, **stored)
    except IntegrityError:
        if UnmatchedMessage.objects.filter(fingerprint=stored["fingerprint"]).exists():
            return None
        raise


def prune_unmatched(
    max_messages: int,
    *,
    newest_pk: int | None = None,
    batch: int = 1000,
    needs_review: bool = False,
) -> int:
    """Keep only the newest ``max_messages`` unmatched messages; return how many were deleted.

    Called after every stored unmatched message, so a flood of forged or stray mail
    can't fill the disk: the table holds at most ``UNMATCHED_MAX_MESSAGES`` rows of at
    most ``RAW_MESSAGE_MAX_BYTES`` each (plus whatever arrives between two prunes).
    Messages flagged for review (:func:`store_for_review`) are capped apart: this
    prunes only the flagged ones when ``needs_review`` is true, and never touches them
    otherwise, so stray mail can't push out a message waiting for a person.
    At most ``batch`` rows go per call, oldest first, so one call stays short and the
    table converges back under the cap when the cap is lowered. Below the cap this
    costs one indexed MIN query; at the cap, one more index walk of ``max_messages``
    ids and one range DELETE. A failure (e.g. a lock timeout) is logged and left to
    the next message: the message itself is stored already.
    """
    try:
        with transaction.atomic():
            rows = UnmatchedMessage.objects.filter(needs_review=needs_review)
            if newest_pk is not None:
                oldest = rows.order_by("id").values_list("id", flat=True).first()
                if oldest is None or newest_pk - oldest < max_messages:
                    return 0  # ids are unique integers: at most max_messages rows up to newest
            boundary = list(
                rows.order_by("-id").values_list("id", flat=True)[max_messages : max_messages + 1]
            )
            if not boundary:
                return 0
            doomed = list(
                rows.filter(id__lte=boundary[0]).order_by("id").values_list("id", flat=True)[:batch]
            )
            if not doomed:
                return 0
            deleted, _ = rows.filter(id__lte=doomed[-1]).delete()
    except DatabaseError:
        logger.warning("Could not prune unmatched mail; the next message will.", exc_info=True)
        return 0
    if deleted:
        logger.warning(
            "%s is over UNMATCHED_MAX_MESSAGES (%d): deleted the %d oldest message(s).",
            "Unmatched mail flagged for review" if needs_review else "Unmatched mail",
            max_messages,
            deleted,
        )
    return deleted
