"""The receiving side: read a message sent to the bounce address, classify it, record it.

Used by ``manage.py handle_bounce`` (the Postfix pipe target) and by the resident
receiver. The contract both rely on:

- :func:`read_message` reads a stream to its end with bounded memory.
- :func:`receive_message` records the message exactly once (by its fingerprint), or
  stores it as unmatched, or keeps it for review when the classifier failed on it, or
  raises. It never returns "try again": any exception means "nothing was recorded,
  deliver it again later" (exit 75, SMTP 451).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from dataclasses import dataclass
from typing import BinaryIO

from bounce_tracker.classify import classify_message
from bounce_tracker.core import events
from bounce_tracker.core.events import Outcome, ReceiveResult, clean_envelope
from bounce_tracker.core.kinds import Classification
from bounce_tracker.core.settings import TrackerSettings, get_settings
from bounce_tracker.core.verp import local_part_of, parse_readable
from bounce_tracker.models import BounceEvent, EmailAddressTracker, EventSource, UnmatchedMessage

READ_CHUNK_BYTES = 64 * 1024
# Header lines the delivering Postfix adds in front of the message (pipe flags R, O,
# D; LMTP adds none). Skipped when hashing, so a message hashes the same however it
# was delivered.
_DELIVERY_HEADER_RE = re.compile(rb"^(return-path|delivered-to|x-original-to):", re.IGNORECASE)
_MESSAGE_ID_RE = re.compile(rb"^message-id:[ \t]*(<[^<>\s]{3,250}>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class IncomingMessage:
    """A message read from a stream: its first bytes, its size and a hash of all of it."""

    data: bytes
    size: int
    content_hash: str

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


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
    classification: Classification | None = None,
) -> ReceiveResult:
    """Classify and record a message for the VERP address ``recipient``.

    A message the classifier fails on is kept for review and counts nothing
    (:func:`keep_for_review`, outcome ``needs_review``): it is safely stored, so the
    MTA must not deliver it again. Raises on anything that prevents recording now
    (database errors included); the caller then asks the MTA to deliver it again.

    ``classification``: the message's, when the caller classified it already (a
    message to several recipients over LMTP is classified once, recorded for each).
    A tracked address costs one transaction of one locking read (which finds the
    row and locks it), one UPDATE and one INSERT
    (:func:`bounce_tracker.core.events.write_event_for`).
    """
    if classification is None:
        classification = classify_message(message.data)
    tracker_settings = tracker_settings or get_settings()
    # The envelope comes from whoever sent the mail: a NUL or an undecodable byte
    # would make the lookup itself fail on every retry.
    sender, recipient = clean_envelope(sender), clean_envelope(recipient)
    stored = _stored_fields(message, sender, recipient, classification, source, tracker_settings)
    if classification.failed:
        return events.store_for_review(classification, stored, tracker_settings)
    local_part = local_part_of(recipient)
    result = events.write_event_for(local_part, classification, stored)
    if result is not None:
        return result
    readable = parse_readable(local_part, tracker_settings)
    reason = (
        f"readable VERP address for {readable}, which is not tracked"
        if readable
        else "no tracked address has this VERP local part"
    )
    return events.store_unmatched(classification, stored, reason, tracker_settings)


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
    stored = _stored_fields(message, sender, recipient, classification, source, tracker_settings)
    return events.write_event(tracker, classification, stored)


def store_unmatched(
    message: IncomingMessage,
    sender: str,
    recipient: str,
    classification: Classification,
    reason: str,
    source: EventSource,
    tracker_settings: TrackerSettings,
) -> ReceiveResult:
    """Keep a message that matches no tracked address (once per fingerprint)."""
    stored = _stored_fields(message, sender, recipient, classification, source, tracker_settings)
    return events.store_unmatched(classification, stored, reason, tracker_settings)


def keep_for_review(
    message: IncomingMessage,
    sender: str,
    recipient: str,
    classification: Classification,
    source: EventSource,
    tracker_settings: TrackerSettings,
) -> ReceiveResult:
    """Keep a message the classifier failed on, flagged for review (once per fingerprint).

    Whether or not its address is tracked: nothing is counted, the failure is logged
    at ERROR (see :func:`bounce_tracker.core.events.store_for_review`).
    """
    stored = _stored_fields(message, sender, recipient, classification, source, tracker_settings)
    return events.store_for_review(classification, stored, tracker_settings)


def _stored_fields(
    message: IncomingMessage,
    sender: str,
    recipient: str,
    classification: Classification,
    source: EventSource,
    tracker_settings: TrackerSettings,
) -> dict[str, object]:
    return events.received_fields(
        raw=message.data,
        raw_size=message.size,
        sender=sender,
        recipient=recipient,
        classification=classification,
        source=source,
        tracker_settings=tracker_settings,
        message_fingerprint=fingerprint(message, recipient),
    )


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

    When the classifier still fails on it, nothing is recorded: the row is flagged for
    review (with the new traceback), the failure logged at ERROR, and the outcome is
    ``needs_review``; the caller keeps the row.
    """
    tracker_settings = tracker_settings or get_settings()
    message = stored_message(unmatched.raw_message, unmatched.raw_size)
    classification = classify_message(message.data)
    if classification.failed:
        events.flag_for_review(unmatched, classification)
        return ReceiveResult(Outcome.NEEDS_REVIEW, classification.kind, unmatched=unmatched)
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
