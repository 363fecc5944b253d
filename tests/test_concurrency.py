"""Concurrent senders on a real database server (MariaDB and PostgreSQL passes)."""

import threading

import pytest
from django.core.mail import EmailMessage, get_connection
from django.db import connection

from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.receiving.settings import get_receiving_settings

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite", reason="needs a database server; SQLite has one writer"
    ),
]


def run_in_threads(count, target):
    barrier = threading.Barrier(count)
    errors = []

    def worker(index):
        try:
            barrier.wait(timeout=10)
            target(index)
        except Exception as exc:  # collected and reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a worker did not finish in 60 s"
    assert errors == []


def test_twenty_concurrent_sends_to_a_new_address_make_one_row_counting_twenty():
    def send(index):
        message = EmailMessage(f"M{index}", "B", "n@example.com", ["Fresh@Example.com"])
        assert get_connection().send_messages([message]) == 1

    run_in_threads(20, send)

    tracker = EmailAddressTracker.objects.get()
    assert tracker.email == "fresh@example.com"
    assert tracker.msg_count == 20
    assert tracker.first_email <= tracker.last_email


def test_concurrent_batches_with_overlapping_new_recipients_count_every_copy():
    # Overlapping inserts of new addresses deadlock on MariaDB's unique-index locks;
    # the losers are retried, so every copy is still counted exactly once.
    shared = [f"shared{i}@example.com" for i in range(300)]

    def send(index):
        message = EmailMessage(
            f"M{index}", "B", "n@example.com", bcc=[*shared, f"own{index}@example.com"]
        )
        get_connection().send_messages([message])

    run_in_threads(8, send)

    assert EmailAddressTracker.objects.count() == 308
    assert set(
        EmailAddressTracker.objects.filter(email__in=shared).values_list("msg_count", flat=True)
    ) == {8}


def test_concurrent_bounces_for_one_address_all_count_without_deadlocks():
    import io

    from bounce_tracker.receiving.receive import Outcome, read_message, receive_message
    from tests import messages

    EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")
    outcomes = []

    def bounce(index):
        raw = messages.dsn(status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
        message = read_message(io.BytesIO(raw), get_receiving_settings().max_message_bytes)
        outcomes.append(receive_message(message, "", "bounces+abc@bounces.example.com").outcome)

    run_in_threads(20, bounce)

    assert outcomes == [Outcome.RECORDED] * 20
    tracker = EmailAddressTracker.objects.get()
    assert tracker.bounce_count == 20
    times = [tracker.last_bounce, tracker.last_bounce2, tracker.last_bounce3]
    assert len(set(times)) == 3
    assert times == sorted(times, reverse=True)
