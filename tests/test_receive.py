import hashlib
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from bounce_tracker.core.kinds import BounceKind
from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.signals import address_suppressed, bounce_recorded
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.policy import evaluate
from bounce_tracker.receiving.receive import Outcome, fingerprint, read_message, receive_message
from bounce_tracker.receiving.settings import get_receiving_settings
from tests import messages

pytestmark = pytest.mark.django_db

VERP = "bounces+abc@bounces.example.com"


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


def receive(raw, recipient=VERP, sender="MAILER-DAEMON"):
    message = read_message(io.BytesIO(raw), get_receiving_settings().max_message_bytes)
    return receive_message(message, sender, recipient)


def test_a_hard_bounce_is_recorded_counted_and_suppresses(tracker):
    result = receive(messages.dsn())

    assert result.outcome is Outcome.RECORDED
    assert result.kind is BounceKind.HARD
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert tracker.first_bounce == tracker.last_bounce is not None
    assert tracker.last_bounce2 is None
    assert tracker.suppressed_reason == "hard"
    assert "5.1.1" in tracker.suppressed_detail
    event = BounceEvent.objects.get()
    assert (event.kind, event.status, event.counted) == ("hard", "5.1.1", True)
    assert event.recipient == "dead@example.org"
    assert "User unknown" in event.diagnostic
    assert event.envelope_sender == "MAILER-DAEMON"
    assert bytes(event.raw_message).startswith(b"Return-Path")
    assert not evaluate(tracker, get_settings()).send


def test_the_recipient_matches_in_any_letter_case(tracker):
    assert receive(messages.dsn(), recipient=VERP.upper()).outcome is Outcome.RECORDED


def test_the_same_message_delivered_twice_counts_once(tracker):
    raw = messages.dsn()
    assert receive(raw).outcome is Outcome.RECORDED
    assert receive(raw).outcome is Outcome.DUPLICATE
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert BounceEvent.objects.count() == 1


def test_the_same_report_accepted_twice_by_our_mx_counts_once(tracker):
    raw = messages.dsn(message_id="<same-report@mx.example.net>")
    again = b"Received: from mx.example.net by our-mx (Postfix) id XYZ;\r\n" + raw
    receive(raw)
    assert receive(again).outcome is Outcome.DUPLICATE


def test_a_later_bounce_for_the_same_address_counts_again_and_shifts_the_times(tracker):
    receive(messages.dsn(status="4.2.2", action="failed", diagnostic="smtp; 452 4.2.2 Over quota"))
    receive(messages.dsn(status="4.2.2", action="failed", diagnostic="smtp; 452 4.2.2 Over quota"))
    receive(messages.dsn(status="4.2.2", action="failed", diagnostic="smtp; 452 4.2.2 Over quota"))
    tracker.refresh_from_db()
    assert tracker.bounce_count == 3
    assert tracker.suppressed_reason == ""
    times = [tracker.last_bounce, tracker.last_bounce2, tracker.last_bounce3]
    assert times == sorted(times, reverse=True)
    assert len(set(times)) == 3
    assert tracker.first_bounce == tracker.last_bounce3
    verdict = evaluate(tracker, get_settings())
    assert not verdict.send
    assert "3 bounces within 14 days" in verdict.reason


def test_the_shift_moves_every_time_down_one_place_on_this_database(tracker):
    old = timezone.now() - timedelta(days=30)
    EmailAddressTracker.objects.filter(pk=tracker.pk).update(
        first_bounce=old - timedelta(days=3),
        last_bounce=old,
        last_bounce2=old - timedelta(days=1),
        last_bounce3=old - timedelta(days=2),
        bounce_count=7,
    )
    receive(messages.dsn(status="4.4.1", diagnostic="X-Postfix; connection timed out"))
    tracker.refresh_from_db()
    assert tracker.last_bounce > old
    assert tracker.last_bounce2 == old
    assert tracker.last_bounce3 == old - timedelta(days=1)
    assert tracker.first_bounce == old - timedelta(days=3)
    assert tracker.bounce_count == 8


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (
            messages.dsn(
                status="4.4.1", action="delayed", diagnostic="X-Postfix; connection timed out"
            ),
            BounceKind.DELAYED,
        ),
        (
            messages.dsn(status="2.0.0", action="delivered", diagnostic="smtp; 250 2.0.0 Ok"),
            BounceKind.DELIVERED,
        ),
        (messages.auto_reply(), BounceKind.AUTO_REPLY),
        (messages.human_reply(), BounceKind.NOT_BOUNCE),
        (b"\x00\xff\xfe garbage \x81\x82", BounceKind.NOT_BOUNCE),
        (b"", BounceKind.NOT_BOUNCE),
    ],
)
def test_kinds_that_are_recorded_but_not_counted(tracker, raw, kind):
    result = receive(raw)
    assert result.outcome is Outcome.RECORDED
    assert result.kind is kind
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0
    assert tracker.last_bounce is None
    assert tracker.suppressed_reason == ""
    assert BounceEvent.objects.get().counted is False


def test_a_complaint_suppresses_without_counting(tracker):
    assert receive(messages.complaint()).kind is BounceKind.COMPLAINT
    tracker.refresh_from_db()
    assert tracker.suppressed_reason == "complaint"
    assert tracker.bounce_count == 0


def test_a_not_spam_report_never_suppresses(tracker):
    receive(messages.complaint(feedback_type="not-spam"))
    tracker.refresh_from_db()
    assert tracker.suppressed_reason == ""


def test_suppressed_since_keeps_the_first_suppression_time(tracker):
    receive(messages.dsn())
    tracker.refresh_from_db()
    first = tracker.suppressed_at
    receive(messages.dsn())
    tracker.refresh_from_db()
    assert tracker.suppressed_at == first
    assert tracker.bounce_count == 2


def test_an_unknown_token_is_stored_as_unmatched_and_changes_no_tracker(tracker):
    result = receive(messages.dsn(), recipient="bounces+forgedtoken@bounces.example.com")
    assert result.outcome is Outcome.UNMATCHED
    unmatched = UnmatchedMessage.objects.get()
    assert unmatched.reason == "no tracked address has this VERP local part"
    assert unmatched.kind == "hard"
    assert BounceEvent.objects.count() == 0
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0 and tracker.suppressed_reason == ""  # noqa: PT018
    assert (
        receive(messages.dsn(message_id="<x@y>"), recipient="bounces+forgedtoken@b.example").outcome
        is Outcome.UNMATCHED
    )


def test_an_unmatched_message_delivered_twice_is_stored_once():
    raw = messages.human_reply()
    assert receive(raw, recipient="nobody@bounces.example.com").outcome is Outcome.UNMATCHED
    assert receive(raw, recipient="nobody@bounces.example.com").outcome is Outcome.DUPLICATE
    assert UnmatchedMessage.objects.count() == 1


def test_an_untracked_readable_address_is_named_in_the_unmatched_reason(settings):
    settings.BOUNCE_TRACKER = {
        **settings.BOUNCE_TRACKER,
        "VERP_PREFIX": "sentto",
        "VERP_DELIMITER": "-",
    }
    receive(messages.dsn(), recipient="sentto-brian=example.com@bounces.example.com")
    assert "brian@example.com" in UnmatchedMessage.objects.get().reason


def test_signals_fire_after_commit(tracker, django_capture_on_commit_callbacks):
    recorded, suppressed = [], []

    def on_recorded(sender, tracker, event, **kwargs):
        recorded.append((tracker.bounce_count, event.kind))

    def on_suppressed(sender, tracker, event, **kwargs):
        suppressed.append(tracker.suppressed_reason)

    bounce_recorded.connect(on_recorded)
    address_suppressed.connect(on_suppressed)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            receive(messages.dsn())
            assert recorded == []
    finally:
        bounce_recorded.disconnect(on_recorded)
        address_suppressed.disconnect(on_suppressed)
    assert recorded == [(1, "hard")]
    assert suppressed == ["hard"]


def test_raw_messages_are_stored_capped(tracker, settings):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "RAW_MESSAGE_MAX_BYTES": 100}
    receive(messages.dsn())
    event = BounceEvent.objects.get()
    assert len(bytes(event.raw_message)) == 100
    assert event.raw_truncated
    assert event.raw_size > 100


class CountingStream(io.RawIOBase):
    """``size`` bytes of a repeated pattern, produced on demand (never all in memory)."""

    def __init__(self, size):
        self.remaining = size

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(len(buffer), self.remaining)
        buffer[:count] = b"x" * count
        self.remaining -= count
        return count


def test_read_message_reads_everything_but_keeps_only_the_cap():
    stream = io.BufferedReader(CountingStream(50 * 1024 * 1024))
    message = read_message(stream, 1024 * 1024)
    assert message.size == 50 * 1024 * 1024
    assert len(message.data) == 1024 * 1024
    assert message.truncated
    assert stream.read() == b""


def test_the_hash_covers_the_message_without_the_delivery_headers():
    body = b"From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"
    piped = b"Return-Path: <>\r\nX-Original-To: b@x\r\nDelivered-To: b@x\r\n" + body
    assert read_message(io.BytesIO(piped), 10**6).content_hash == hashlib.sha256(body).hexdigest()
    assert read_message(io.BytesIO(body), 10**6).content_hash == hashlib.sha256(body).hexdigest()


def test_without_a_message_id_the_fingerprint_is_the_content():
    one = read_message(io.BytesIO(b"Subject: a\r\n\r\none"), 1000)
    two = read_message(io.BytesIO(b"Subject: a\r\n\r\ntwo"), 1000)
    assert fingerprint(one, VERP) != fingerprint(two, VERP)
    assert fingerprint(one, VERP) == fingerprint(one, VERP.upper())
    assert fingerprint(one, VERP) != fingerprint(one, "bounces+other@bounces.example.com")


def test_record_event_records_a_classified_failure_once_per_fingerprint():
    from bounce_tracker.classify import classify_reply
    from bounce_tracker.core.events import record_event
    from bounce_tracker.models import EventSource

    tracker = EmailAddressTracker.objects.create(email="gone@example.org", encoded_from="b+x")
    classification = classify_reply("550 5.1.1 <gone@example.org>: User unknown", source="smtp")

    def record():
        return record_event(
            tracker,
            classification,
            source=EventSource.SMTP,
            event_fingerprint="smtp:<m1@example.com>:gone@example.org",
            raw=b"550 5.1.1 <gone@example.org>: User unknown",
            envelope_recipient="gone@example.org",
        )

    first, second = record(), record()
    assert (first.outcome, second.outcome) == (Outcome.RECORDED, Outcome.DUPLICATE)
    event = BounceEvent.objects.get()
    assert (event.kind, event.status, event.source) == ("hard", "5.1.1", "smtp")
    assert event.classifier_reason == "smtp:text:user unknown"
    assert bytes(event.raw_message) == b"550 5.1.1 <gone@example.org>: User unknown"
    tracker.refresh_from_db()
    assert (tracker.bounce_count, tracker.suppressed_reason) == (1, "hard")
