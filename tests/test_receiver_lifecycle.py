"""``receive_bounces``: its defaults, shutting down with several workers, the hot path."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import bounce_tracker.classify
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.receiving.lmtp.protocol import Envelope
from bounce_tracker.receiving.lmtp.service import NormalizingBuilder, record_message
from bounce_tracker.receiving.settings import get_receiving_settings
from tests import messages
from tests.postfix_harness import wait_until
from tests.test_receive_bounces import UNKNOWN, VERP, start_command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def stop(process) -> bytes:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return err


def test_with_two_workers_sigterm_closes_the_listening_socket_at_once(tracker):
    """New connections are refused while a worker still finishes its message in flight:
    no process keeps the socket open to accept connections nobody will greet."""
    process, port = start_command("--workers", "2")
    try:
        busy = smtplib.LMTP("127.0.0.1", port, timeout=30)
        busy.ehlo("client.test")
        assert busy.mail("")[0] == 250
        assert busy.rcpt(VERP)[0] == 250
        busy.putcmd("data")
        assert busy.getreply()[0] == 354
        raw = messages.dsn()
        busy.send(raw[: len(raw) // 2])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(port), 20, "new connections to be refused")
        assert process.poll() is None  # still finishing the message in flight
        busy.send(raw[len(raw) // 2 :] + b".\r\n")
        code, reply = busy.getreply()
        assert code == 250, reply
        busy.close()
        err = stop(process)
    finally:
        stop(process)
    assert process.returncode == 0, err.decode()
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1


def test_with_no_options_one_worker_per_cpu_it_may_use():
    process, port = start_command()
    try:
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.test")
        client.quit()
    finally:
        err = stop(process)
    assert process.returncode == 0, err.decode()
    workers = len(os.sched_getaffinity(0))
    assert f" {workers} worker process(es) x 10 database threads" in err.decode()


def deliver(recipients: list[str], raw: bytes) -> list[str]:
    settings = get_receiving_settings()
    builder = NormalizingBuilder(settings.max_message_bytes)
    for line in raw.splitlines(keepends=True):
        builder.write(line)
    return record_message(builder, Envelope(sender="", recipients=recipients), settings)


def test_a_message_to_several_recipients_is_classified_once(tracker, monkeypatch):
    calls = []
    classify = bounce_tracker.classify.classify_message

    def counting(data):
        calls.append(len(data))
        return classify(data)

    monkeypatch.setattr(bounce_tracker.classify, "classify_message", counting)
    others = [f"bounces+other{n}@bounces.example.com" for n in range(20)]
    replies = deliver([VERP, UNKNOWN, *others], messages.dsn())
    assert len(calls) == 1
    assert len(replies) == 22
    assert "recorded (hard)" in replies[0]
    assert all("stored as unmatched" in reply for reply in replies[1:])
    assert BounceEvent.objects.count() == 1
    assert UnmatchedMessage.objects.count() == 21


def test_a_tracked_message_is_one_locking_read_one_update_one_insert(tracker):
    with CaptureQueriesContext(connection) as queries:
        [reply] = deliver([VERP], messages.dsn())
    assert "recorded (hard)" in reply
    statements = [
        query["sql"].split()[0].upper()
        for query in queries.captured_queries
        # Transaction control, and a new connection's session settings (MySQL's SET).
        if not query["sql"].upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "SET"))
    ]
    assert statements == ["SELECT", "UPDATE", "INSERT"]
    if connection.features.has_select_for_update:
        assert any("FOR UPDATE" in query["sql"].upper() for query in queries.captured_queries)
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert tracker.last_bounce is not None
    assert tracker.first_bounce == tracker.last_bounce
    assert tracker.suppressed_reason
    event = BounceEvent.objects.get()
    assert event.tracker_id == tracker.pk
    assert event.kind == "hard"
    assert event.received_at == tracker.last_bounce
