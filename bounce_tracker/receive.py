"""The receiving side: read a message sent to the bounce address, classify it, record it.

Used by ``manage.py handle_bounce`` (the Postfix pipe target) and by the resident
receiver. The contract both rely on:

- :func:`read_message` reads a stream to its end with bounded memory.
- :func:`receive_message` records the message exactly once (by its fingerprint), or
  stores it as unmatched, or raises. It never returns "try again": any exception
  means "nothing was recorded, deliver it again later" (exit 75, SMTP 451).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import io
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.db.models.functions import Coalesce
from django.dispatch import Signal
from django.utils import timezone

from bounce_tracker.classify import Classification, classify_message
from bounce_tracker.conf import TrackerSettings, get_settings
from bounce_tracker.kinds import COUNTED_KINDS, SUPPRESSING_KINDS, BounceKind
from bounce_tracker.models import (
    BounceEvent,
    EmailAddressTracker,
    EventSource,
    SuppressionReason,
    UnmatchedMessage,
)
from bounce_tracker.signals import address_suppressed, bounce_recorded
from bounce_tracker.tracking import retry_deadlocks
from bounce_tracker.verp import local_part_of, parse_readable

logger = logging.getLogger("bounce_tracker")

READ_CHUNK_BYTES = 64 * 1024
# Header lines the delivering Postfix adds in front of the message (pipe flags R, O,
# D; LMTP adds none). Skipped when hashing, so a message hashes the same however it
# was delivered.
_DELIVERY_HEADER_RE = re.compile(rb"^(return-path|delivered-to|x-original-to):", re.IGNORECASE)
_MESSAGE_ID_RE = re.compile(rb"^message-id:[ \t]*(<[^<>\s]{3,250}>)", re.IGNORECASE | re.MULTILINE)

_SUPPRESSION_REASONS = {
    BounceKind.HARD: SuppressionReason.HARD_BOUNCE,
    BounceKind.COMPLAINT: SuppressionReason.COMPLAINT,
}


@dataclass(frozen=True)
class IncomingMessage:
    """A message read from a stream: its first bytes, its size and a hash of all of it."""

    data: bytes
    size: int
    content_hash: str

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


class Outcome(enum.StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    UNMATCHED = "unmatched"


@dataclass(frozen=True)
class ReceiveResult:
    outcome: Outcome
    kind: BounceKind
    event: BounceEvent | None = None
    unmatched: UnmatchedMessage | None = None


def read_message(stream: BinaryIO, max_bytes: int) -> IncomingMessage:
    """Read ``stream`` to its end, keeping at most ``max_bytes`` (memory stays bounded).

    The hash covers everything read except the delivery headers at the very top.
    """
    builder = MessageBuilder(max_bytes)
    while chunk := stream.read(READ_CHUNK_BYTES):
        builder.write(chunk)
    return builder.finish()


class MessageBuilder:
    """Builds an :class:`IncomingMessage` from pieces of any size, in bounded memory.

    :func:`read_message` feeds it a stream's chunks; the LMTP receiver feeds it the
    lines of a DATA section. The result is the same however the bytes are split.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._kept = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._at_top = True
        self._pending = b""

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if len(self._kept) < self.max_bytes:
            self._kept += chunk[: self.max_bytes - len(self._kept)]
        if not self._at_top:
            self._digest.update(chunk)
            return
        self._pending += chunk
        self._pending, self._at_top = _skip_delivery_headers(self._pending, final=False)
        if self._at_top and len(self._pending) < READ_CHUNK_BYTES:
            return  # need the rest of the line to decide
        self._digest.update(self._pending)
        self._pending = b""
        self._at_top = False

    def finish(self) -> IncomingMessage:
        if self._at_top:
            self._pending, _ = _skip_delivery_headers(self._pending, final=True)
        self._digest.update(self._pending)
        self._pending = b""
        return IncomingMessage(
            data=bytes(self._kept), size=self._size, content_hash=self._digest.hexdigest()
        )


def _skip_delivery_headers(data: bytes, *, final: bool = True) -> tuple[bytes, bool]:
    """Drop complete leading delivery header lines; True while undecided.

    Undecided: no complete line yet, or (unless ``final``) a delivery header line that
    ends where the data ends, so a folded continuation may still follow.
    """
    while True:
        end = data.find(b"\n")
        if end < 0:
            return data, True
        line = data[: end + 1]
        if not _DELIVERY_HEADER_RE.match(line):
            return data, False
        following = data[end + 1 : end + 2]
        if not following and not final:
            return data, True
        if following in (b" ", b"\t"):
            return data, False
        data = data[end + 1 :]


def fingerprint(message: IncomingMessage, recipient: str) -> str:
    """What makes two deliveries "the same message" for one bounce address.

    The Message-ID when the message has one: the same report accepted twice by our
    MX (the remote MTA retried after a timeout) differs in our own Received header
    but not in its Message-ID. Without a Message-ID, the content hash.
    """
    header_end = message.data.find(b"\n\n")
    if header_end < 0:
        header_end = message.data.find(b"\r\n\r\n")
    headers = message.data[: header_end if header_end >= 0 else 64 * 1024]
    found = _MESSAGE_ID_RE.search(headers)
    identity = (
        b"message-id:" + found.group(1) if found else b"content:" + message.content_hash.encode()
    )
    return hashlib.sha256(local_part_of(recipient).encode() + b"\n" + identity).hexdigest()


def receive_message(
    message: IncomingMessage,
    sender: str,
    recipient: str,
    *,
    source: EventSource = EventSource.PIPE,
    tracker_settings: TrackerSettings | None = None,
) -> ReceiveResult:
    """Classify and record a message for the VERP address ``recipient``.

    Raises on anything that prevents recording now (database errors included); the
    caller then asks the MTA to deliver it again.
    """
    tracker_settings = tracker_settings or get_settings()
    # The envelope comes from whoever sent the mail: a NUL or an undecodable byte
    # would make the lookup itself fail on every retry.
    sender, recipient = clean_envelope(sender), clean_envelope(recipient)
    classification = classify_message(message.data)
    local_part = local_part_of(recipient)
    tracker = EmailAddressTracker.objects.filter(encoded_from=local_part).first()
    if tracker is None:
        readable = parse_readable(local_part, tracker_settings)
        reason = (
            f"readable VERP address for {readable}, which is not tracked"
            if readable
            else "no tracked address has this VERP local part"
        )
        return store_unmatched(
            message, sender, recipient, classification, reason, source, tracker_settings
        )
    return record_bounce(
        tracker, message, sender, recipient, classification, source, tracker_settings
    )


def _received_fields(
    message: IncomingMessage,
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
        "raw_message": message.data[: tracker_settings.raw_message_max_bytes],
        "raw_size": message.size,
        "raw_truncated": message.size > tracker_settings.raw_message_max_bytes,
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


def record_bounce(
    tracker: EmailAddressTracker,
    message: IncomingMessage,
    sender: str,
    recipient: str,
    classification: Classification,
    source: EventSource,
    tracker_settings: TrackerSettings,
) -> ReceiveResult:
    """Write the event and update the tracker in one transaction, exactly once."""
    event_fingerprint = fingerprint(message, recipient)
    stored = _received_fields(
        message, sender, recipient, classification, source, tracker_settings, event_fingerprint
    )
    return _write_event(tracker, classification, stored)


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
    like :func:`receive_message`, the event is recorded exactly once per
    fingerprint, with the same tracker updates, policy effects and signals.
    ``raw`` is what to keep as the event's raw message (a webhook payload, an SMTP
    reply), cut to ``RAW_MESSAGE_MAX_BYTES``.
    """
    tracker_settings = tracker_settings or get_settings()
    message = IncomingMessage(data=raw, size=len(raw), content_hash="")
    stored = _received_fields(
        message,
        envelope_sender,
        envelope_recipient,
        classification,
        source,
        tracker_settings,
        hashlib.sha256(event_fingerprint.encode()).hexdigest(),
    )
    return _write_event(tracker, classification, stored)


def _write_event(
    tracker: EmailAddressTracker, classification: Classification, stored: dict[str, object]
) -> ReceiveResult:
    kind = classification.kind

    def write() -> BounceEvent:
        with transaction.atomic():
            # Lock the tracker row first: the event INSERT takes a shared lock on it
            # for its foreign key, and two handlers for one address that each hold
            # that shared lock and then want the exclusive one deadlock on MariaDB.
            # Reading the clock after the lock is granted keeps last_bounce the
            # latest time however the handlers queue up. A duplicate's INSERT fails
            # and rolls the UPDATE back with it.
            row = EmailAddressTracker.objects.filter(pk=tracker.pk)
            list(row.select_for_update().values_list("pk", flat=True))
            now = timezone.now()
            row.update(**_tracker_updates(kind, now, classification))
            event = BounceEvent.objects.create(
                tracker=tracker,
                kind=kind,
                counted=kind in COUNTED_KINDS,
                reporting_mta=storable_text(classification.reporting_mta)[:255],
                original_message_id=storable_text(classification.original_message_id or "")[:255],
                classifier_reason=storable_text(classification.reason)[:100],
                received_at=now,
                **stored,
            )
            transaction.on_commit(lambda: _send_signals(tracker.pk, event, kind))
        return event

    try:
        event = retry_deadlocks(write)
    except IntegrityError:
        if BounceEvent.objects.filter(fingerprint=stored["fingerprint"]).exists():
            return ReceiveResult(Outcome.DUPLICATE, kind)
        raise
    return ReceiveResult(Outcome.RECORDED, kind, event=event)


def _tracker_updates(
    kind: BounceKind, now: datetime, classification: Classification
) -> dict[str, object]:
    """The SET list of the single UPDATE a message of ``kind`` makes.

    Every kind records itself as ``last_event_kind``; counted kinds shift the bounce
    times, suppressing kinds set the suppression mark.

    Order matters: MySQL/MariaDB evaluate SET assignments left to right with the
    values already assigned, PostgreSQL and SQLite with the old ones. Assigning
    ``last_bounce3`` before ``last_bounce2`` before ``last_bounce`` (and
    ``suppressed_at`` before ``suppressed_reason``) reads old values on all of them.
    """
    stamp = Value(now, output_field=DateTimeField())
    updates: dict[str, object] = {"last_event_kind": kind.value}
    if kind in SUPPRESSING_KINDS:
        detail = storable_text(
            " ".join(filter(None, [classification.status, classification.diagnostic]))
        )
        updates["suppressed_at"] = Case(
            When(suppressed_reason="", then=stamp),
            default=F("suppressed_at"),
            output_field=DateTimeField(),
        )
        updates["suppressed_reason"] = _SUPPRESSION_REASONS[kind]
        updates["suppressed_detail"] = detail[:255]
    if kind in COUNTED_KINDS:
        updates["last_bounce3"] = F("last_bounce2")
        updates["last_bounce2"] = F("last_bounce")
        updates["last_bounce"] = stamp
        updates["bounce_count"] = F("bounce_count") + 1
        updates["first_bounce"] = Coalesce(F("first_bounce"), stamp)
    return updates


def _send_signals(tracker_pk: int, event: BounceEvent, kind: BounceKind) -> None:
    suppressed = kind in SUPPRESSING_KINDS
    if not (bounce_recorded.has_listeners() or (suppressed and address_suppressed.has_listeners())):
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
    message: IncomingMessage,
    sender: str,
    recipient: str,
    classification: Classification,
    reason: str,
    source: EventSource,
    tracker_settings: TrackerSettings,
) -> ReceiveResult:
    """Keep a message that matches no tracked address (once per fingerprint).

    Then only the newest ``UNMATCHED_MAX_MESSAGES`` are kept (:func:`prune_unmatched`).
    """
    unmatched_fingerprint = fingerprint(message, recipient)
    try:
        with transaction.atomic():
            unmatched = UnmatchedMessage.objects.create(
                reason=reason[:255],
                kind=classification.kind,
                **_received_fields(
                    message,
                    sender,
                    recipient,
                    classification,
                    source,
                    tracker_settings,
                    unmatched_fingerprint,
                ),
            )
    except IntegrityError:
        if UnmatchedMessage.objects.filter(fingerprint=unmatched_fingerprint).exists():
            return ReceiveResult(Outcome.DUPLICATE, classification.kind)
        raise
    prune_unmatched(tracker_settings.unmatched_max_messages, newest_pk=unmatched.pk)
    return ReceiveResult(Outcome.UNMATCHED, classification.kind, unmatched=unmatched)


def prune_unmatched(max_messages: int, *, newest_pk: int | None = None, batch: int = 1000) -> int:
    """Keep only the newest ``max_messages`` unmatched messages; return how many were deleted.

    Called after every stored unmatched message, so a flood of forged or stray mail
    can't fill the disk: the table holds at most ``UNMATCHED_MAX_MESSAGES`` rows of at
    most ``RAW_MESSAGE_MAX_BYTES`` each (plus whatever arrives between two prunes).
    At most ``batch`` rows go per call, oldest first, so one call stays short and the
    table converges back under the cap when the cap is lowered. Below the cap this
    costs one indexed MIN query; at the cap, one more index walk of ``max_messages``
    ids and one range DELETE. A failure (e.g. a lock timeout) is logged and left to
    the next message: the message itself is stored already.
    """
    try:
        with transaction.atomic():
            rows = UnmatchedMessage.objects.all()
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
            "Unmatched mail is over UNMATCHED_MAX_MESSAGES (%d): deleted the %d oldest message(s).",
            max_messages,
            deleted,
        )
    return deleted


def stored_message(raw: bytes | memoryview, size: int) -> IncomingMessage:
    """An :class:`IncomingMessage` rebuilt from a stored raw message and its original size.

    The hash covers the stored bytes (the first ``RAW_MESSAGE_MAX_BYTES`` of a larger
    message), so rebuilding the same stored message always gives the same fingerprint.
    """
    raw = bytes(raw)
    message = read_message(io.BytesIO(raw), max_bytes=len(raw))
    return dataclasses.replace(message, size=max(size, len(raw)))


def record_unmatched_message(
    unmatched: UnmatchedMessage,
    tracker: EmailAddressTracker,
    *,
    tracker_settings: TrackerSettings | None = None,
) -> ReceiveResult:
    """Record a stored unmatched message as a message for ``tracker`` (staff chose it).

    The stored raw message is classified again and recorded like a delivered one
    (:func:`record_bounce`, source ``admin``), exactly once: the fingerprint is the one
    the message has for the bounce address it really reached, so attaching it twice,
    attaching a redelivered copy, or a redelivery once the address exists, records
    nothing more (outcome ``duplicate``; ``event`` is then the event recorded before).
    The unmatched row itself is left to the caller to delete.
    """
    tracker_settings = tracker_settings or get_settings()
    message = stored_message(unmatched.raw_message, unmatched.raw_size)
    classification = classify_message(message.data)
    result = record_bounce(
        tracker,
        message,
        unmatched.envelope_sender,
        unmatched.envelope_recipient,
        classification,
        EventSource.ADMIN,
        tracker_settings,
    )
    if result.outcome == Outcome.DUPLICATE:
        earlier = (
            BounceEvent.objects.select_related("tracker")
            .defer("raw_message")
            .filter(fingerprint=fingerprint(message, unmatched.envelope_recipient))
            .first()
        )
        return ReceiveResult(Outcome.DUPLICATE, result.kind, event=earlier)
    return result
