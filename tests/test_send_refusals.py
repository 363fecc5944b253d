"""Recipients refused at send time are recorded as bounce events (docs/refusals.rst).

Against a real SMTP listener (tests/smtp_sink.py) with Django's SMTP backend as the
wrapped backend, and with django-anymail's test backend for an ESP's statuses.
Runs on SQLite, MariaDB and PostgreSQL like the rest of the suite.
"""

from __future__ import annotations

import logging
import smtplib
import socket
from email import message_from_bytes
from typing import Any, ClassVar

import pytest
from django.core.mail import EmailMessage, get_connection, send_mail
from django.db import DatabaseError

from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.signals import bounce_recorded
from bounce_tracker.core.verp import return_path
from bounce_tracker.models import BounceEvent, EmailAddressTracker, EventSource, SuppressionReason
from bounce_tracker.sending.backend import BounceTrackingBackend
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.django_db

SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
NO_SUCH_USER = "550 5.1.1 <{}>: Recipient address rejected: No such user"


@pytest.fixture
def sink(settings):
    with SmtpSink() as server:
        settings.BOUNCE_TRACKER = {"BOUNCE_DOMAIN": "bounces.example.com", "BACKEND": SMTP_BACKEND}
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        yield server.state


def tracker(address: str) -> EmailAddressTracker:
    return EmailAddressTracker.objects.for_email(address).get()


def events(address: str) -> list[BounceEvent]:
    return list(BounceEvent.objects.filter(tracker__email=address).order_by("id"))


def delivered_to(state) -> list[str]:
    return [t.rcpt_to[0] for t in state.transactions]


def test_a_550_5_1_1_at_rcpt_is_a_hard_bounce_that_suppresses_and_the_next_send_skips_it(sink):
    sink.reject.add("gone@example.com")

    assert send_mail("S", "B", "n@example.com", ["a@example.com", "gone@example.com"]) == 1

    [event] = events("gone@example.com")
    assert event.kind == "hard"
    assert event.counted
    assert event.source == EventSource.SMTP
    assert event.get_source_display() == "refused at send time"
    assert event.status == "5.1.1"
    assert event.diagnostic == NO_SUCH_USER.format("gone@example.com")
    assert bytes(event.raw_message) == NO_SUCH_USER.format("gone@example.com").encode()
    assert event.recipient == "gone@example.com"
    assert event.envelope_recipient == "gone@example.com"
    gone = tracker("gone@example.com")
    assert event.envelope_sender == return_path(gone.encoded_from, get_settings())
    assert event.reporting_mta == "127.0.0.1"
    delivered = message_from_bytes(sink.transactions[0].data)
    assert event.original_message_id == delivered["Message-ID"]
    assert event.classifier_reason.startswith("smtp-rcpt:")
    assert (gone.suppressed_reason, gone.bounce_count, gone.msg_count) == (
        SuppressionReason.HARD_BOUNCE,
        1,
        0,
    )
    assert gone.last_bounce is not None
    assert gone.is_suppressed
    assert tracker("a@example.com").bounce_count == 0
    assert not events("a@example.com")

    # The policy now skips it: no RCPT TO at all, nothing more recorded.
    sink.rcpts_seen.clear()
    assert send_mail("S2", "B", "n@example.com", ["a@example.com", "gone@example.com"]) == 1
    assert sink.rcpts_seen == ["a@example.com"]
    assert len(events("gone@example.com")) == 1


def test_a_452_4_2_2_is_a_soft_bounce_that_counts_and_three_reach_the_soft_threshold(sink):
    sink.replies["full@example.com"] = "452 4.2.2 Mailbox full"

    for attempt in range(3):
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send_mail(f"S{attempt}", "B", "n@example.com", ["full@example.com"])
        full = tracker("full@example.com")
        assert full.bounce_count == attempt + 1
        assert full.suppressed_reason == ""
    assert [(e.kind, e.status, e.counted) for e in events("full@example.com")] == [
        ("soft", "4.2.2", True)
    ] * 3
    # Three soft bounces within the window: the default policy stops sending.
    sink.rcpts_seen.clear()
    assert send_mail("S4", "B", "n@example.com", ["full@example.com"]) == 0
    assert sink.rcpts_seen == []


def test_one_of_three_refused_sends_two_records_one_and_raises_nothing(sink):
    sink.reject.add("gone@example.com")

    count = EmailMessage(
        "S", "B", "n@example.com", to=["a@example.com", "gone@example.com"], bcc=["b@example.com"]
    ).send()

    assert count == 1
    assert sorted(delivered_to(sink)) == ["a@example.com", "b@example.com"]
    assert BounceEvent.objects.count() == 1
    assert events("gone@example.com")[0].kind == "hard"
    assert tracker("a@example.com").msg_count == 1
    assert tracker("gone@example.com").msg_count == 0


def test_every_recipient_refused_raises_smtp_recipients_refused_and_both_are_recorded(sink):
    sink.reject.add("gone@example.com")
    sink.replies["full@example.com"] = "452 4.2.2 Mailbox full"

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send_mail("S", "B", "n@example.com", ["gone@example.com", "full@example.com"])

    assert refused.value.recipients == {
        "gone@example.com": (550, NO_SUCH_USER.format("gone@example.com")[4:].encode()),
        "full@example.com": (452, b"4.2.2 Mailbox full"),
    }
    assert [e.kind for e in events("gone@example.com")] == ["hard"]
    assert [e.kind for e in events("full@example.com")] == ["soft"]
    assert sink.transactions == []


def test_fail_silently_records_the_refusal_raises_nothing_and_returns_what_was_sent(sink):
    sink.reject.update({"gone@example.com", "lost@example.com"})

    assert send_mail("S", "B", "n@example.com", ["gone@example.com"], fail_silently=True) == 0
    assert [e.kind for e in events("gone@example.com")] == ["hard"]

    connection = get_connection(fail_silently=True)
    assert connection.inner.fail_silently is False  # the reply must reach us
    messages = [
        EmailMessage("1", "B", "n@example.com", ["lost@example.com"]),
        EmailMessage("2", "B", "n@example.com", ["a@example.com", "lost@example.com"]),
        EmailMessage("3", "B", "n@example.com", ["b@example.com"]),
    ]
    # The fully refused first message doesn't stop the batch.
    assert connection.send_messages(messages) == 2
    assert sorted(delivered_to(sink)) == ["a@example.com", "b@example.com"]
    # lost@ was refused in message 1; the policy skipped it in message 2.
    assert [e.kind for e in events("lost@example.com")] == ["hard"]


def test_a_refusal_at_data_is_the_recipients_refusal(sink):
    sink.data_replies["spam@example.com"] = "554 5.7.1 Message content rejected as spam"
    sink.data_replies["@closed.example"] = "550 5.1.1 Mailbox does not exist"

    count = send_mail(
        "S", "B", "n@example.com", ["a@example.com", "spam@example.com", "x@closed.example"]
    )

    assert count == 1
    assert delivered_to(sink) == ["a@example.com"]
    [spam] = events("spam@example.com")
    assert (spam.kind, spam.status, spam.source) == ("soft", "5.7.1", EventSource.SMTP)
    assert bytes(spam.raw_message) == b"554 5.7.1 Message content rejected as spam"
    assert spam.classifier_reason.startswith("smtp-data:")
    [closed] = events("x@closed.example")
    assert closed.kind == "hard"
    assert tracker("x@closed.example").suppressed_reason == SuppressionReason.HARD_BOUNCE

    # One recipient refused at DATA: raises what Django's SMTP backend raises, recorded.
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_mail("S", "B", "n@example.com", ["spam@example.com"])
    assert refused.value.smtp_code == 554
    assert len(events("spam@example.com")) == 2


def test_a_refused_envelope_sender_is_never_recorded_against_the_recipient(sink, caplog):
    sink.mail_reply = "553 5.7.1 Sender address rejected: not owned by user"

    with (
        caplog.at_level(logging.ERROR, logger="bounce_tracker"),
        pytest.raises(smtplib.SMTPSenderRefused),
    ):
        send_mail("S", "B", "n@example.com", ["a@example.com", "b@example.com"])
    assert "refused the envelope sender bounces+" in caplog.text

    assert send_mail("S", "B", "n@example.com", ["a@example.com"], fail_silently=True) == 0
    assert BounceEvent.objects.count() == 0
    assert tracker("a@example.com").bounce_count == 0
    assert tracker("a@example.com").suppressed_reason == ""


def test_an_address_that_ignores_bounces_is_recorded_and_still_sent_to(sink):
    EmailAddressTracker.objects.create(
        email="vip@example.com", encoded_from="bounces+vip", ignore_bounces=True
    )
    sink.reject.add("vip@example.com")

    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail("S", "B", "n@example.com", ["vip@example.com"])
    sink.rcpts_seen.clear()
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail("S", "B", "n@example.com", ["vip@example.com"])

    # As for a received bounce: recorded, counted and marked, but ignore_bounces sends.
    assert sink.rcpts_seen == ["vip@example.com"]
    assert [e.kind for e in events("vip@example.com")] == ["hard", "hard"]
    vip = tracker("vip@example.com")
    assert vip.bounce_count == 2
    assert vip.suppressed_reason == SuppressionReason.HARD_BOUNCE
    assert not vip.is_suppressed


def test_the_same_message_refused_again_is_another_attempt_and_counts_again(sink):
    sink.replies["full@example.com"] = "452 4.2.2 Mailbox full"
    message = EmailMessage(
        "S",
        "B",
        "n@example.com",
        ["full@example.com"],
        headers={"Message-ID": "<retry@example.com>"},
    )
    for _ in range(2):
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            message.send()
    assert [e.original_message_id for e in events("full@example.com")] == [
        "<retry@example.com>"
    ] * 2
    assert tracker("full@example.com").bounce_count == 2


def test_a_421_closing_the_connection_is_not_held_against_the_address(sink, caplog):
    sink.replies["a@example.com"] = "421 4.3.0 Service shutting down"

    with (
        caplog.at_level(logging.WARNING, logger="bounce_tracker"),
        pytest.raises(smtplib.SMTPRecipientsRefused),
    ):
        send_mail("S", "B", "n@example.com", ["a@example.com"])
    assert BounceEvent.objects.count() == 0
    assert "not recorded against the address" in caplog.text


def test_a_database_error_while_recording_is_logged_and_the_send_result_stands(
    sink, monkeypatch, caplog
):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("database went away")

    monkeypatch.setattr("bounce_tracker.sending.refusals.record_event", broken)
    sink.reject.add("gone@example.com")

    with caplog.at_level(logging.ERROR, logger="bounce_tracker"):
        assert send_mail("S", "B", "n@example.com", ["a@example.com", "gone@example.com"]) == 1
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send_mail("S", "B", "n@example.com", ["gone@example.com"])
    assert "could not be recorded" in caplog.text
    assert "database went away" in caplog.text
    assert tracker("a@example.com").msg_count == 1
    assert BounceEvent.objects.count() == 0


def test_a_failing_signal_receiver_never_breaks_sending(sink, django_capture_on_commit_callbacks):
    calls = []

    def receiver(**kwargs: Any) -> None:
        calls.append(kwargs["event"].kind)
        raise RuntimeError("receiver bug")

    sink.reject.add("gone@example.com")
    bounce_recorded.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert send_mail("S", "B", "n@example.com", ["a@example.com", "gone@example.com"]) == 1
    finally:
        bounce_recorded.disconnect(receiver)
    assert calls == ["hard"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_errors_are_raised_or_swallowed_as_fail_silently_says(settings):
    settings.BOUNCE_TRACKER = {"BOUNCE_DOMAIN": "bounces.example.com", "BACKEND": SMTP_BACKEND}
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = _closed_port()
    message = EmailMessage("S", "B", "n@example.com", ["a@example.com"])

    with pytest.raises(ConnectionRefusedError):
        get_connection().send_messages([message])
    with pytest.raises(ConnectionRefusedError):
        get_connection().open()

    silent = get_connection(fail_silently=True)
    assert silent.send_messages([message]) == 0
    assert silent.open() is None
    silent.close()
    with silent:
        pass
    assert send_mail("S", "B", "n@example.com", ["a@example.com"], fail_silently=True) == 0
    assert BounceEvent.objects.count() == 0


def test_a_dropped_connection_skips_the_copies_only_with_fail_silently(sink):
    message = EmailMessage("S", "B", "n@example.com", ["a@example.com", "b@example.com"])
    silent = BounceTrackingBackend(fail_silently=True)
    silent.inner.open()
    silent.inner.connection.close()  # every copy fails with SMTPServerDisconnected
    assert silent.send_messages([message]) == 0

    loud = BounceTrackingBackend()
    loud.inner.open()
    loud.inner.connection.close()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        loud.send_messages([message])
    assert BounceEvent.objects.count() == 0
    assert sink.transactions == []


# --- django-anymail: an ESP's recipient status -------------------------------------

try:
    from anymail.backends.test import EmailBackend as AnymailTestBackend
    from anymail.exceptions import AnymailRecipientsRefused
    from anymail.message import AnymailRecipientStatus
except ImportError:  # the anymail extra is not installed
    AnymailTestBackend = None

ANYMAIL_SETTINGS = {"IGNORE_UNSUPPORTED_FEATURES": True}
# Skipped without django-anymail, failed under BOUNCE_TRACKER_REQUIRE_SERVICES=1.
needs_anymail = pytest.mark.usefixtures("anymail_installed")

if AnymailTestBackend is not None:

    class PerRecipientStatusBackend(AnymailTestBackend):
        """anymail's test backend, answering each recipient's status from ``statuses``."""

        statuses: ClassVar[dict[str, str]] = {}

        def parse_recipient_status(self, response, payload, message):
            return {
                email: AnymailRecipientStatus(f"id-{email}", self.statuses.get(email, "sent"))
                for email in payload.recipient_emails
            }


@pytest.fixture
def esp(settings):
    settings.BOUNCE_TRACKER = {
        "BOUNCE_DOMAIN": "bounces.example.com",
        "BACKEND": "tests.test_send_refusals.PerRecipientStatusBackend",
    }
    # Each copy keeps the caller's To header while its envelope has one recipient,
    # which anymail's test backend calls an unsupported "spoofed To".
    settings.ANYMAIL = ANYMAIL_SETTINGS
    PerRecipientStatusBackend.statuses = {}
    return PerRecipientStatusBackend.statuses


@needs_anymail
def test_the_real_anymail_test_backend_rejecting_the_only_recipient(settings):
    settings.BOUNCE_TRACKER = {
        "BOUNCE_DOMAIN": "bounces.example.com",
        "BACKEND": "anymail.backends.test.EmailBackend",
    }
    settings.ANYMAIL = ANYMAIL_SETTINGS
    message = EmailMessage("S", "B", "n@example.com", ["blocked@example.com"])
    message.anymail_test_response = {
        "recipient_status": {"blocked@example.com": AnymailRecipientStatus("esp-1", "rejected")}
    }
    with pytest.raises(AnymailRecipientsRefused):
        message.send()
    assert get_connection(fail_silently=True).send_messages([message]) == 0

    first, second = events("blocked@example.com")
    assert (first.kind, first.source, first.status) == ("soft", EventSource.SMTP, "")
    assert first.reporting_mta == "Test"
    assert first.classifier_reason == "esp:rejected"
    assert first.diagnostic.startswith("Test reported the recipient rejected")
    assert b'"message_id": "esp-1"' in bytes(first.raw_message)
    assert second.kind == "soft"
    blocked = tracker("blocked@example.com")
    assert (blocked.bounce_count, blocked.msg_count, blocked.suppressed_reason) == (2, 0, "")


@needs_anymail
def test_an_invalid_address_is_hard_and_one_rejected_of_two_raises_nothing(esp):
    esp.update({"bad@example.com": "invalid", "blocked@example.com": "rejected"})

    count = send_mail(
        "S", "B", "n@example.com", ["a@example.com", "bad@example.com", "blocked@example.com"]
    )

    assert count == 1
    assert [e.kind for e in events("bad@example.com")] == ["hard"]
    assert [e.kind for e in events("blocked@example.com")] == ["soft"]
    assert tracker("bad@example.com").suppressed_reason == SuppressionReason.HARD_BOUNCE
    assert tracker("a@example.com").msg_count == 1
    assert not events("a@example.com")

    with pytest.raises(AnymailRecipientsRefused):
        send_mail("S", "B", "n@example.com", ["blocked@example.com"])
    assert len(events("blocked@example.com")) == 2


@needs_anymail
def test_with_ignore_recipient_status_the_rejection_is_recorded_and_the_copy_counted(esp, settings):
    settings.ANYMAIL = {**ANYMAIL_SETTINGS, "IGNORE_RECIPIENT_STATUS": True}
    esp["blocked@example.com"] = "rejected"

    assert send_mail("S", "B", "n@example.com", ["blocked@example.com"]) == 1
    [event] = events("blocked@example.com")
    assert (event.kind, event.reporting_mta, event.classifier_reason) == (
        "soft",
        "Test",
        "esp:rejected",
    )
    assert tracker("blocked@example.com").msg_count == 1


@needs_anymail
def test_failed_and_queued_statuses_are_not_refusals(esp):
    esp.update({"q@example.com": "queued", "f@example.com": "failed"})
    assert send_mail("S", "B", "n@example.com", ["q@example.com", "f@example.com"]) == 1
    assert BounceEvent.objects.count() == 0
