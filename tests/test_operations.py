"""bounce_tracker.core.operations called directly, as a site's view or a script would.

The admin's actions are these functions (tests/test_admin.py checks them through the
admin); here: what they change, what they leave alone, the admin log entries they
write under the user given, and that they read the rows under a row lock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.test import modify_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bounce_tracker.core import operations
from bounce_tracker.core.operations import set_ignore_bounces, unsuppress, unsuppress_changes
from bounce_tracker.models import BounceEvent, EmailAddressTracker, SuppressionReason

NOW = timezone.now()


def make_tracker(email: str, **fields) -> EmailAddressTracker:
    return EmailAddressTracker.objects.create(
        email=email, encoded_from=f"bounces+{email.partition('@')[0]}", **fields
    )


def suppressed_tracker(email: str = "dead@example.org", **fields) -> EmailAddressTracker:
    values = {
        "suppressed_reason": SuppressionReason.HARD_BOUNCE,
        "suppressed_at": datetime(2026, 5, 3, 12, 0, tzinfo=UTC),
        "suppressed_detail": "5.1.1 user unknown",
        "msg_count": 7,
        "first_email": NOW - timedelta(days=30),
        "last_email": NOW - timedelta(days=3),
        "first_bounce": NOW - timedelta(days=2),
        "last_bounce": NOW - timedelta(days=1),
        "last_bounce2": NOW - timedelta(days=2),
        "bounce_count": 2,
        **fields,
    }
    return make_tracker(email, **values)


def log_entries(tracker: EmailAddressTracker) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(EmailAddressTracker),
            object_id=str(tracker.pk),
        ).order_by("pk")
    )


def log_messages(tracker: EmailAddressTracker) -> list[str]:
    return [entry.get_change_message() for entry in log_entries(tracker)]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("support", is_staff=True)


# --- on SQLite and every database -------------------------------------------------------


@pytest.mark.django_db
def test_unsuppress_clears_the_mark_and_the_bounce_counters_and_keeps_the_rest(staff):
    tracker = suppressed_tracker(ignore_bounces=True)
    BounceEvent.objects.create(tracker=tracker, kind="hard", fingerprint="e1")

    [changed] = unsuppress(tracker, by=staff)

    tracker.refresh_from_db()
    for field, value in operations.UNSUPPRESSED_VALUES.items():
        assert getattr(tracker, field) == value, field
        assert getattr(changed, field) == value, field
    assert (tracker.msg_count, tracker.ignore_bounces) == (7, True)
    assert tracker.first_email == NOW - timedelta(days=30)
    assert tracker.last_email == NOW - timedelta(days=3)
    assert tracker.bounce_events.count() == 1  # the history is kept


@pytest.mark.django_db
def test_unsuppress_writes_one_admin_log_entry_saying_what_was_reset_under_the_user(staff):
    tracker = suppressed_tracker()
    unsuppress(tracker, by=staff, reason="ticket 4711")
    [entry] = log_entries(tracker)
    assert entry.user == staff
    assert entry.action_flag == CHANGE
    assert entry.object_repr == "dead@example.org"
    assert entry.get_change_message() == (
        "Un-suppressed and reset counters (ticket 4711): suppression mark cleared (was: hard "
        "bounce since May 3, 2026: 5.1.1 user unknown); bounce count reset from 2 to 0; first "
        f"and last bounce times cleared (first bounce {operations._day(NOW - timedelta(days=2))}"
        f", last bounce {operations._day(NOW - timedelta(days=1))})."
    )


@pytest.mark.django_db
def test_unsuppress_leaves_rows_with_nothing_to_reset_alone_and_unlogged(staff):
    healthy = make_tracker("fine@example.com", msg_count=3)
    assert unsuppress_changes(healthy) == []
    assert unsuppress(healthy, by=staff) == []
    assert log_messages(healthy) == []


@pytest.mark.django_db
def test_the_operations_take_a_tracker_a_queryset_or_a_list(staff):
    trackers = [suppressed_tracker(f"user{i}@example.com") for i in range(4)]
    assert len(unsuppress(trackers[0], by=staff)) == 1
    one = EmailAddressTracker.objects.filter(email="user1@example.com")
    assert len(unsuppress(one, by=staff)) == 1
    assert len(unsuppress(trackers[2:], by=staff)) == 2
    assert not EmailAddressTracker.objects.exclude(suppressed_reason="").exists()

    assert len(set_ignore_bounces(EmailAddressTracker.objects.all(), True, by=staff)) == 4
    assert len(set_ignore_bounces(trackers[:3], False, by=staff)) == 3
    assert len(set_ignore_bounces(trackers[3], False, by=staff)) == 1


@pytest.mark.django_db
def test_set_ignore_bounces_changes_and_logs_only_the_rows_that_differ(staff):
    already = make_tracker("on@example.com", ignore_bounces=True)
    other = make_tracker("off@example.com")

    changed = set_ignore_bounces([already, other], True, by=staff, reason="customer asked")

    assert [tracker.email for tracker in changed] == ["off@example.com"]
    assert changed[0].ignore_bounces is True
    assert set(EmailAddressTracker.objects.values_list("ignore_bounces", flat=True)) == {True}
    assert log_messages(already) == []
    [entry] = log_entries(other)
    assert (entry.user, entry.action_flag) == (staff, CHANGE)
    assert entry.get_change_message() == "Turned ignore bounces on (customer asked)."

    assert set_ignore_bounces(other, False, by=staff) != []
    assert log_messages(other)[-1] == "Turned ignore bounces off."


@pytest.mark.django_db
def test_without_a_user_the_rows_change_and_nothing_is_logged():
    tracker = suppressed_tracker()
    assert len(set_ignore_bounces(tracker, True, by=None)) == 1
    assert len(unsuppress(tracker, by=None)) == 1
    tracker.refresh_from_db()
    assert (tracker.ignore_bounces, tracker.suppressed_reason) == (True, "")
    assert tracker.bounce_count == 0
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_without_the_admin_app_installed_the_operations_work_and_log_nothing(staff):
    tracker = suppressed_tracker()
    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.admin"]}):
        assert len(unsuppress(tracker, by=staff)) == 1
        assert len(set_ignore_bounces(tracker, True, by=staff)) == 1
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_many_rows_are_changed_in_several_transactions_and_each_is_logged(staff, monkeypatch):
    monkeypatch.setattr(operations, "ROWS_PER_TRANSACTION", 2)
    trackers = [suppressed_tracker(f"user{i}@example.com") for i in range(5)]

    with CaptureQueriesContext(connection) as queries:
        assert len(unsuppress(EmailAddressTracker.objects.all(), by=staff)) == 5

    # Inside the test's transaction each of the function's transactions is a savepoint.
    assert sum(query["sql"].startswith("SAVEPOINT") for query in queries.captured_queries) == 3
    assert [len(log_messages(tracker)) for tracker in trackers] == [1] * 5
    assert not EmailAddressTracker.objects.exclude(bounce_count=0).exists()


@pytest.mark.django_db
def test_mail_borne_text_in_the_log_has_its_bidi_controls_made_visible(staff):
    tracker = suppressed_tracker(suppressed_detail="550 \u202eevil\u202c")
    assert "550 [U+202E]evil[U+202C]" in unsuppress_changes(tracker)[0]
    unsuppress(tracker, by=staff)
    assert "\u202e" not in log_messages(tracker)[0]
    assert "[U+202E]" in log_messages(tracker)[0]


# --- row locks, on database servers -------------------------------------------------------

HOLD_SECONDS = 1.0


def hold_row_lock(tracker: EmailAddressTracker, **changes) -> threading.Thread:
    """Another transaction: lock the row, change it, keep the lock a while, commit.

    Returns once the row is locked; the thread commits after :data:`HOLD_SECONDS`.
    """
    locked = threading.Event()

    def run() -> None:
        try:
            with transaction.atomic():
                list(EmailAddressTracker.objects.select_for_update().filter(pk=tracker.pk))
                EmailAddressTracker.objects.filter(pk=tracker.pk).update(**changes)
                locked.set()
                time.sleep(HOLD_SECONDS)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert locked.wait(timeout=10)
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no row locks")
def test_unsuppress_waits_for_a_bounce_being_recorded_and_logs_what_it_really_reset(staff):
    tracker = suppressed_tracker()
    # A bounce recorded meanwhile: the third, not yet committed when unsuppress starts.
    other = hold_row_lock(tracker, bounce_count=3, last_bounce3=NOW - timedelta(days=2))
    started = time.monotonic()

    unsuppress(tracker, by=staff)

    assert time.monotonic() - started >= HOLD_SECONDS * 0.8  # it waited for the lock
    other.join(timeout=30)
    assert not other.is_alive()
    tracker.refresh_from_db()
    assert (tracker.bounce_count, tracker.last_bounce3) == (0, None)
    [message] = log_messages(tracker)
    assert "bounce count reset from 3 to 0" in message


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor == "sqlite", reason="SQLite has no row locks")
def test_set_ignore_bounces_waits_for_a_concurrent_change_and_logs_only_real_changes(staff):
    tracker = make_tracker("busy@example.com")
    other = hold_row_lock(tracker, ignore_bounces=True)  # another click, a moment earlier
    started = time.monotonic()

    changed = set_ignore_bounces(tracker, True, by=staff)

    assert time.monotonic() - started >= HOLD_SECONDS * 0.8
    other.join(timeout=30)
    assert not other.is_alive()
    assert changed == []
    assert log_messages(tracker) == []
