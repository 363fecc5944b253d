"""A classifier failure is never silent (issue 16).

A bug in the classifier (injected here: a classifier step raises) must not turn a
bounce into an ordinary ``not_bounce``. The message is kept in unmatched mail,
flagged for review, logged at ERROR with the exception, counted on the dashboard and
shown in the admin; the tracker is not touched; a second delivery stores nothing
more; the pipe exits 0 (the message is safe, Postfix must not retry it for days);
staff attach it once the classifier is fixed.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse

from bounce_tracker.classify import classifier
from bounce_tracker.core.events import prune_unmatched
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.receiving.lmtp.protocol import Envelope
from bounce_tracker.receiving.lmtp.service import NormalizingBuilder, record_message
from bounce_tracker.receiving.receive import Outcome, read_message, receive_message
from bounce_tracker.receiving.settings import get_receiving_settings
from tests import messages
from tests.test_handle_bounce import ROOT, database_url

VERP = "bounces+abc@bounces.example.com"
UNMATCHED = "admin:bounce_tracker_unmatchedmessage_changelist"
TRACKER_FIELDS = (
    "bounce_count",
    "first_bounce",
    "last_bounce",
    "last_bounce2",
    "last_bounce3",
    "suppressed_reason",
    "suppressed_at",
    "last_event_kind",
)


def _broken_classify_dsn(report: object) -> None:
    raise KeyError("injected classifier bug")


@pytest.fixture
def broken(monkeypatch):
    """The classifier fails on every DSN, as a parser bug would."""
    monkeypatch.setattr(classifier, "classify_dsn", _broken_classify_dsn)
    return monkeypatch


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


def receive(raw: bytes, recipient: str = VERP):
    message = read_message(io.BytesIO(raw), get_receiving_settings().max_message_bytes)
    return receive_message(message, "MAILER-DAEMON", recipient)


def tracker_state(tracker: EmailAddressTracker) -> tuple[object, ...]:
    tracker.refresh_from_db()
    return tuple(getattr(tracker, name) for name in TRACKER_FIELDS)


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "bounce_tracker" and record.levelno == logging.ERROR
    ]


# --- the classifier's verdict ---------------------------------------------------------------


def test_the_verdict_says_the_classifier_failed_and_carries_the_traceback(broken):
    result = classifier.classify_message(messages.dsn())

    assert result.failed == "KeyError: 'injected classifier bug'"
    assert result.reason == "classifier failed: KeyError"
    assert isinstance(result.error, KeyError)
    assert result.extra["traceback"].startswith("Traceback (most recent call last):")
    assert "_broken_classify_dsn" in result.extra["traceback"]
    assert result.extra["traceback"].rstrip().endswith("KeyError: 'injected classifier bug'")


def test_a_normal_verdict_has_no_failure():
    result = classifier.classify_message(messages.dsn())
    assert (result.kind, result.failed, result.error) == ("hard", "", None)
    assert "traceback" not in result.extra


def test_the_failure_text_is_one_printable_line_of_bounded_length(monkeypatch):
    def explode(report: object) -> None:
        raise ValueError("line one\nline two\x1b[31m" + "x" * 5000)

    monkeypatch.setattr(classifier, "classify_dsn", explode)
    failed = classifier.classify_message(messages.dsn()).failed

    assert failed.startswith("ValueError: line one line two\ufffd[31mxxx")
    assert failed.isprintable()
    assert len(failed) == len("ValueError: ") + classifier.MAX_FAILED_CHARS


# --- receiving: kept, flagged, logged, not counted, exactly once -----------------------------


@pytest.mark.django_db
def test_a_hard_bounce_the_classifier_fails_on_is_kept_flagged_and_logged_not_counted(
    broken, tracker, caplog
):
    before = tracker_state(tracker)
    raw = messages.dsn()

    result = receive(raw)

    assert result.outcome is Outcome.NEEDS_REVIEW
    assert not BounceEvent.objects.exists()
    assert tracker_state(tracker) == before
    kept = UnmatchedMessage.objects.get()
    assert result.unmatched == kept
    assert kept.needs_review
    assert kept.kind == ""  # not an ordinary not_bounce: it has no verdict
    assert kept.reason == "classifier failed: KeyError: 'injected classifier bug'"
    assert "_broken_classify_dsn" in kept.classifier_error
    assert bytes(kept.raw_message) == raw
    assert kept.envelope_recipient == VERP
    [logged] = errors_logged(caplog)
    assert logged.exc_info is not None
    assert logged.exc_info[0] is KeyError
    assert VERP in logged.getMessage()
    assert f"unmatched message #{kept.pk}" in logged.getMessage()


@pytest.mark.django_db
def test_a_second_delivery_of_the_same_message_stores_nothing_more(broken, tracker, caplog):
    raw = messages.dsn()
    assert receive(raw).outcome is Outcome.NEEDS_REVIEW

    again = receive(b"Received: from mx.example.net by our-mx (Postfix) id XYZ;\n" + raw)

    assert again.outcome is Outcome.DUPLICATE
    assert UnmatchedMessage.objects.count() == 1
    assert not BounceEvent.objects.exists()
    assert len(errors_logged(caplog)) == 1  # the second one is a warning


@pytest.mark.django_db
def test_a_message_recorded_before_the_classifier_broke_is_a_duplicate(tracker, monkeypatch):
    raw = messages.dsn()
    assert receive(raw).outcome is Outcome.RECORDED
    monkeypatch.setattr(classifier, "classify_dsn", _broken_classify_dsn)

    assert receive(raw).outcome is Outcome.DUPLICATE

    assert not UnmatchedMessage.objects.exists()
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1


@pytest.mark.django_db
def test_a_failure_on_mail_for_an_unknown_address_is_flagged_too(broken):
    result = receive(messages.dsn(), recipient="bounces+nobody@bounces.example.com")
    assert result.outcome is Outcome.NEEDS_REVIEW
    assert UnmatchedMessage.objects.get().needs_review


@pytest.mark.django_db(transaction=True)  # the receiver closes old connections
def test_the_lmtp_receiver_answers_250_kept_for_review(broken, tracker):
    builder = NormalizingBuilder(get_receiving_settings().max_message_bytes)
    builder.write(messages.dsn())
    envelope = Envelope(sender="", recipients=[VERP])

    [reply] = record_message(builder, envelope, get_receiving_settings())

    assert reply == f"250 2.0.0 <{VERP}> kept for review: classifier failed"
    assert UnmatchedMessage.objects.get().needs_review


@pytest.mark.django_db
def test_stray_mail_never_pushes_out_a_message_kept_for_review(broken):
    receive(messages.dsn(), recipient="bounces+nobody@bounces.example.com")
    broken.undo()
    for number in range(4):
        receive(messages.dsn(), recipient=f"bounces+stray{number}@bounces.example.com")

    assert prune_unmatched(2) == 2

    assert UnmatchedMessage.objects.filter(needs_review=True).count() == 1
    assert UnmatchedMessage.objects.filter(needs_review=False).count() == 2


@pytest.mark.django_db
def test_messages_kept_for_review_have_their_own_cap(broken):
    for number in range(3):
        receive(messages.dsn(message_id=f"<bug-{number}@mx.example.net>"))
    assert prune_unmatched(2, needs_review=True) == 1
    assert UnmatchedMessage.objects.filter(needs_review=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_handle_bounce_exits_0_keeps_the_message_once_and_logs_the_traceback(tracker):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.broken_classifier_settings",
        "DATABASE_URL": database_url(),
    }
    raw = messages.dsn()

    def handle_bounce() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "django", "handle_bounce", "--", "MAILER-DAEMON", VERP],
            input=raw,
            capture_output=True,
            env=env,
            timeout=120,
            check=False,
        )

    first = handle_bounce()
    second = handle_bounce()

    assert (first.returncode, second.returncode) == (0, 0)
    # No logging configured: Python's last-resort handler writes the error to stderr
    # (Postfix ignores the output of a delivery that exits 0).
    assert b"The classifier failed on the message to <" in first.stderr
    assert b"KeyError: 'injected classifier bug'" in first.stderr
    assert b"Traceback" in first.stderr
    kept = UnmatchedMessage.objects.get()
    assert kept.needs_review
    assert not BounceEvent.objects.exists()
    tracker.refresh_from_db()
    assert (tracker.bounce_count, tracker.suppressed_reason) == (0, "")


# --- inspect_bounce ----------------------------------------------------------------------


def test_inspect_bounce_json_shows_the_failure(broken, tmp_path):
    path = tmp_path / "hard.eml"
    path.write_bytes(messages.dsn())
    out = StringIO()

    call_command("inspect_bounce", "--json", str(path), stdout=out)

    report = json.loads(out.getvalue())
    assert report["kind"] == "not_bounce"
    assert report["failed"] == "KeyError: 'injected classifier bug'"
    assert "_broken_classify_dsn" in report["traceback"]


def test_inspect_bounce_json_has_a_null_failure_normally(tmp_path):
    path = tmp_path / "hard.eml"
    path.write_bytes(messages.dsn())
    out = StringIO()
    call_command("inspect_bounce", "--json", str(path), stdout=out)
    report = json.loads(out.getvalue())
    assert (report["kind"], report["failed"]) == ("hard", None)
    assert "traceback" not in report


# --- the admin and the dashboard ---------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_lists_filters_and_shows_a_message_kept_for_review(broken, admin_client):
    receive(messages.dsn())
    broken.undo()
    receive(messages.auto_reply(), recipient="bounces+stray@bounces.example.com")
    kept = UnmatchedMessage.objects.get(needs_review=True)

    listing = admin_client.get(reverse(UNMATCHED)).content.decode()
    flagged = admin_client.get(reverse(UNMATCHED), {"needs_review__exact": "1"})
    detail = admin_client.get(
        reverse("admin:bounce_tracker_unmatchedmessage_change", args=[kept.pk])
    ).content.decode()

    assert listing.count('<span class="bt-state bt-state-review">classifier failed</span>') == 1
    assert [row.pk for row in flagged.context["cl"].result_list] == [kept.pk]
    assert "classifier failed: KeyError" in detail
    assert "_broken_classify_dsn" in detail  # the traceback
    assert '<pre class="bt-raw">Traceback (most recent call last):' in detail


@pytest.mark.django_db
def test_the_dashboard_counts_messages_kept_for_review_and_links_to_them(broken, admin_client):
    dashboard = reverse("admin:bounce_tracker_dashboard")
    empty = admin_client.get(dashboard).content.decode()
    receive(messages.dsn())
    receive(messages.dsn(message_id="<another@mx.example.net>"))

    content = admin_client.get(dashboard).content.decode()

    assert '<li class="bt-card" id="bt-card-review">' in empty
    assert '<li class="bt-card bt-card-alert" id="bt-card-review">' in content
    card = content.split('id="bt-card-review">', 1)[1].split("</li>", 1)[0]
    assert '<span class="bt-card-figure">2</span>' in card
    assert f'href="{reverse(UNMATCHED)}?needs_review__exact=1"' in card


def attach(client, unmatched, address):
    return client.post(
        reverse(UNMATCHED),
        {
            "action": "attach_to_address",
            "_selected_action": [unmatched.pk],
            "post": "yes",
            "address": address,
        },
    )


@pytest.mark.django_db
def test_attach_while_the_classifier_still_fails_records_nothing(broken, admin_client, tracker):
    kept = receive(messages.dsn()).unmatched

    response = attach(admin_client, kept, "dead@example.org")

    [notice] = get_messages(response.wsgi_request)
    assert "The classifier still fails" in str(notice)
    assert UnmatchedMessage.objects.get().needs_review
    assert not BounceEvent.objects.exists()
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0


@pytest.mark.django_db
def test_after_the_fix_attaching_records_it_once_with_the_address_filled_in(
    broken, admin_client, tracker
):
    kept = receive(messages.dsn()).unmatched
    broken.undo()  # the classifier is fixed

    form = admin_client.post(
        reverse(UNMATCHED), {"action": "attach_to_address", "_selected_action": [kept.pk]}
    )
    response = attach(admin_client, kept, "dead@example.org")

    assert form.context["form"]["address"].value() == "dead@example.org"
    assert response.status_code == 302
    assert not UnmatchedMessage.objects.exists()
    event = BounceEvent.objects.get()
    assert (event.kind, event.counted, event.tracker_id) == ("hard", True, tracker.pk)
    tracker.refresh_from_db()
    assert (tracker.bounce_count, tracker.suppressed_reason) == (1, "hard")
    # The same message delivered again now is the event recorded by the attach.
    assert receive(bytes(event.raw_message)).outcome is Outcome.DUPLICATE


@pytest.mark.django_db
def test_attaching_an_ordinary_unmatched_message_that_now_fails_flags_it(admin_client, tracker):
    stray = receive(messages.dsn(), recipient="bounces+lost@bounces.example.com").unmatched
    assert not stray.needs_review

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classifier, "classify_dsn", _broken_classify_dsn)
        attach(admin_client, stray, "dead@example.org")

    stray.refresh_from_db()
    assert stray.needs_review
    assert stray.kind == ""
    assert "_broken_classify_dsn" in stray.classifier_error
    assert not BounceEvent.objects.exists()
