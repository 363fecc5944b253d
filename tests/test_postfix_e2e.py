"""End to end through a real Postfix: real mail, real failures, real DSNs, the real pipe.

Mail goes out through the tracking backend to a private Postfix, which relays it to
a fake remote MTA (``SmtpSink``) that rejects or defers; Postfix writes the DSN to
the VERP address and its pipe service, rendered by ``bounce_postfix_config``, runs
``handle_bounce`` as ``nobody``. The database is MariaDB, reached by the pipe
through a proxy the tests can take down.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import smtplib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core import mail
from django.db import connection
from django.test import override_settings

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.ops.postfix import PipeOptions
from tests.postfix_harness import PostfixInstance, TcpProxy, readable_installation, wait_until
from tests.smtp_sink import SmtpSink
from tests.test_receive_bounces import start_command

pytestmark = [
    pytest.mark.postfix,
    pytest.mark.mysql,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parent.parent
BOUNCE_DOMAIN = "bounces.example.com"
PIPE_USER = "nobody"


@pytest.fixture(scope="module")
def pipe_installation() -> Iterator[tuple[str, str]]:
    with readable_installation() as installation:
        yield installation


@pytest.fixture(scope="module")
def remote() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def database_proxy() -> Iterator[TcpProxy]:
    from django.conf import settings

    database = settings.DATABASES["default"]
    proxy = TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 3306))
    proxy.up()
    yield proxy
    proxy.down()


@pytest.fixture(scope="module")
def postfix(
    pipe_installation, remote, database_proxy, django_db_setup, django_db_blocker
) -> Iterator[PostfixInstance]:
    python, pythonpath = pipe_installation
    with django_db_blocker.unblock():
        db = connection.settings_dict
        url = (
            f"mysql://{db['USER']}:{db['PASSWORD'] or ''}@127.0.0.1:"
            f"{database_proxy.port}/{db['NAME']}"
        )
    pipe = PipeOptions(
        python=python,
        manage_py=str(Path(pythonpath) / "example_project" / "manage.py"),
        user=PIPE_USER,
        environment={
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": pythonpath,
            "DATABASE_URL": url,
        },
    )
    with override_settings(BOUNCE_TRACKER={"BOUNCE_DOMAIN": BOUNCE_DOMAIN}):
        tracker_settings = get_settings()
    nexthop = f"smtp:[127.0.0.1]:{remote.port}"
    instance = PostfixInstance(pipe, tracker_settings, routes={"remote.example": nexthop})
    instance.start("fast")
    yield instance
    instance.stop()


@pytest.fixture(autouse=True)
def _clean_slate(request, postfix, remote, database_proxy):
    postfix.empty_queue()
    remote.state.replies.clear()
    remote.state.transactions.clear()
    database_proxy.up()
    started = time.monotonic()
    yield
    request.node.user_properties.append(("seconds", round(time.monotonic() - started, 2)))


@pytest.fixture
def send(postfix):
    """Send through the tracking backend, wrapping SMTP to the private Postfix."""

    def send(to: str, subject: str = "Newsletter") -> int:
        with override_settings(
            BOUNCE_TRACKER={
                "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            },
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=postfix.smtp_port,
        ):
            return mail.send_mail(subject, "Hello.", "News <news@example.com>", [to])

    return send


def tracker(address: str) -> EmailAddressTracker:
    return EmailAddressTracker.objects.for_email(address).get()


def wait_for_events(address: str, count: int = 1, timeout: float = 30, **filters):
    def found():
        events = BounceEvent.objects.filter(tracker__email=address, **filters)
        return list(events) if events.count() >= count else None

    return wait_until(found, timeout, f"{count} {filters or ''} event(s) for {address}")


def test_user_unknown_becomes_a_hard_bounce_that_suppresses(postfix, remote, send):
    address = "gone@remote.example"
    remote.state.replies[address] = (
        "550 5.1.1 <gone@remote.example>: Recipient address rejected: User unknown"
    )
    assert send(address) == 1

    [event] = wait_for_events(address)
    assert (event.kind, event.status, event.recipient) == ("hard", "5.1.1", address)
    assert event.reporting_mta == "mx.postfix-e2e.test"
    row = tracker(address)
    assert (row.bounce_count, row.suppressed_reason) == (1, "hard")
    postfix.wait_for_log(r"relay=bouncehandler.*status=sent")
    assert send(address, "Next issue") == 0  # the policy skips it now
    time.sleep(0.5)
    assert tracker(address).bounce_count == 1


def test_a_full_mailbox_rejection_is_soft_counted_and_not_suppressed(send, remote):
    address = "full@remote.example"
    remote.state.replies[address] = "552 5.2.2 <full@remote.example>: Mailbox full, over quota"
    send(address)
    [event] = wait_for_events(address)
    assert (event.kind, event.status, event.counted) == ("soft", "5.2.2", True)
    row = tracker(address)
    assert (row.bounce_count, row.suppressed_reason) == (1, "")


def test_a_deferral_gives_a_delay_warning_then_one_counted_bounce_on_expiry(send, remote):
    address = "later@remote.example"
    remote.state.replies[address] = "451 4.2.0 <later@remote.example>: Try again later"
    send(address)
    [delayed] = wait_for_events(address, kind="delayed")
    assert (delayed.counted, delayed.status) == (False, "4.2.0")
    [final] = wait_for_events(address, kind="soft", timeout=30)
    assert final.counted
    assert tracker(address).bounce_count == 1
    assert BounceEvent.objects.filter(tracker__email=address).count() == 2


def test_a_dsn_arriving_while_the_database_is_down_waits_in_the_queue(
    postfix, send, remote, database_proxy
):
    postfix.set_profile("hold")
    try:
        address = "gone2@remote.example"
        remote.state.replies[address] = "550 5.1.1 <gone2@remote.example>: User unknown"
        # Only the pipe goes through the proxy; sending here still reaches the database.
        database_proxy.down()
        send(address)
        deferred = postfix.wait_for_log(r"relay=bouncehandler.*status=deferred")
        assert "Postfix will retry" in deferred[-1]
        assert not BounceEvent.objects.exists()
        queued = postfix.queue()
        assert [q["recipients"][0]["address"] for q in queued] == [
            f"{tracker(address).encoded_from}@{BOUNCE_DOMAIN}"
        ]

        database_proxy.up()
        postfix.flush()
        [event] = wait_for_events(address)
        assert event.kind == "hard"
        wait_until(lambda: not postfix.queue(), 20, "the queue to empty")
        assert tracker(address).bounce_count == 1
    finally:
        database_proxy.up()
        postfix.set_profile("fast")


def test_a_site_that_cannot_start_defers_the_dsn_naming_the_cause_and_a_fix_records_it_once(
    postfix, send, remote
):
    """A broken deploy (the pipe's settings module doesn't exist) loses no bounce."""
    good = postfix.pipe
    broken = dataclasses.replace(
        good, environment={**good.environment, "DJANGO_SETTINGS_MODULE": "does_not_exist"}
    )
    postfix.set_profile("hold")
    try:
        postfix.set_pipe(broken)
        address = "gone3@remote.example"
        remote.state.replies[address] = "550 5.1.1 <gone3@remote.example>: User unknown"
        send(address)
        to = re.escape(f"to=<{tracker(address).encoded_from}@{BOUNCE_DOMAIN}>")
        [deferred] = postfix.wait_for_log(rf"{to}.*relay=bouncehandler.*status=deferred")
        cause = "ModuleNotFoundError: No module named 'does_not_exist'"
        reason = deferred[deferred.index("status=deferred (") + len("status=deferred (") :]
        assert cause in reason[:200], deferred
        assert "dsn=4.3.0" in deferred
        assert "Traceback" not in postfix.log()
        assert not BounceEvent.objects.exists()
        assert len(postfix.queue()) == 1
        # The fix: the right environment, then a flush.
        postfix.set_pipe(good)
        postfix.flush()
        [event] = wait_for_events(address)
        assert event.kind == "hard"
        wait_until(lambda: not postfix.queue(), 20, "the queue to empty")
        postfix.flush()  # nothing left to deliver: still once
        time.sleep(0.5)
        assert tracker(address).bounce_count == 1
        assert BounceEvent.objects.filter(tracker__email=address).count() == 1
        assert len(postfix.log_lines(rf"{to}.*relay=bouncehandler.*status=sent")) == 1
        assert len(postfix.log_lines(rf"{to}.*relay=bouncehandler.*status=deferred")) == 1
    finally:
        postfix.set_pipe(good)
        postfix.set_profile("fast")


def test_mail_to_an_unknown_token_is_stored_as_unmatched_and_delivered(postfix):
    recipient = f"bounces+nosuchtoken00000000000000@{BOUNCE_DOMAIN}"
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=10) as client:
        client.sendmail(
            "", [recipient], b"From: someone@example.org\r\nSubject: hello\r\n\r\nhi\r\n"
        )
    unmatched = wait_until(lambda: UnmatchedMessage.objects.first(), 30, "unmatched mail")
    assert unmatched.envelope_recipient.lower() == recipient
    postfix.wait_for_log(rf"to=<{re.escape(recipient)}>.*relay=bouncehandler.*status=sent")


# --- The same loop through the resident LMTP receiver --------------------------------


@pytest.fixture(scope="module")
def lmtp_postfix(remote, django_db_setup, django_db_blocker) -> Iterator[PostfixInstance]:
    """A second Postfix whose bounce domain goes to ``receive_bounces`` over LMTP."""
    with django_db_blocker.unblock():
        receiver, port = start_command()  # on the test database
    instance = None
    try:
        pipe = PipeOptions(
            python=sys.executable,
            manage_py=str(ROOT / "example_project" / "manage.py"),
            lmtp=f"inet:127.0.0.1:{port}",
        )
        with override_settings(BOUNCE_TRACKER={"BOUNCE_DOMAIN": BOUNCE_DOMAIN}):
            tracker_settings = get_settings()
        instance = PostfixInstance(
            pipe, tracker_settings, routes={"remote.example": f"smtp:[127.0.0.1]:{remote.port}"}
        )
        instance.start("fast")
        yield instance
    finally:
        if instance is not None:
            instance.stop()
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=60)
        assert receiver.returncode == 0, err.decode()


def test_user_unknown_through_lmtp_becomes_a_hard_bounce_that_suppresses(lmtp_postfix, remote):
    address = "gone-lmtp@remote.example"
    remote.state.replies[address] = (
        "550 5.1.1 <gone-lmtp@remote.example>: Recipient address rejected: User unknown"
    )

    def send(subject: str) -> int:
        with override_settings(
            BOUNCE_TRACKER={
                "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
                "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            },
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=lmtp_postfix.smtp_port,
        ):
            return mail.send_mail(subject, "Hello.", "News <news@example.com>", [address])

    assert send("Newsletter") == 1
    [event] = wait_for_events(address)
    assert (event.kind, event.status, event.recipient, event.source) == (
        "hard",
        "5.1.1",
        address,
        "lmtp",
    )
    assert event.reporting_mta == "mx.postfix-e2e.test"
    row = tracker(address)
    assert (row.bounce_count, row.suppressed_reason) == (1, "hard")
    [delivered] = lmtp_postfix.wait_for_log(r"postfix/lmtp\[.*relay=127\.0\.0\.1.*status=sent")
    assert "recorded" in delivered
    assert send("Next issue") == 0  # the policy skips it now
    time.sleep(0.5)
    assert tracker(address).bounce_count == 1
