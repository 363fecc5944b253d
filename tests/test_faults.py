"""Faults under real handlers: the database down, restarted, locked, killed mid-write.

Every test here runs ``handle_bounce`` (and ``receive_bounces``) as separate
processes against a private MariaDB server (``tests.mariadb_harness``) that the test
stops, kills and restarts. What they prove, for ``docs/reliability.md``: a bounce
the database can't take now gets exit 75 (LMTP 451), Postfix delivers it again,
and in the end every bounce is recorded exactly once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import environ
import pytest
from django.db import connections, transaction

from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import encode_local_part, return_path
from bounce_tracker.models import BounceEvent, EmailAddressTracker
from bounce_tracker.ops.postfix import PipeOptions
from bounce_tracker.receiving.receive import fingerprint, read_message
from tests import messages
from tests.mariadb_harness import (
    PrivateMariaDB,
    available,
    django_environment,
    private_mariadb,
    wait_for_blocked_query,
)
from tests.postfix_harness import PostfixInstance, readable_installation, wait_until
from tests.services import missing_service
from tests.smtp_sink import SmtpSink
from tests.test_receive_bounces import start_command

pytestmark = [pytest.mark.mysql, pytest.mark.faults, pytest.mark.long]

ALIAS = "faults"
BOUNCE_DOMAIN = "bounces.example.com"
EX_TEMPFAIL = 75


@pytest.fixture(scope="module")
def server(django_db_blocker) -> Iterator[PrivateMariaDB]:
    """The private server, also reachable through the ORM as the ``faults`` alias."""
    if not available():
        missing_service("this needs root and MariaDB's mariadbd and mariadb-install-db")
    with private_mariadb() as private:
        config = environ.Env.db_url_config(private.url())
        config["OPTIONS"] = {"charset": "utf8mb4"}
        connections.settings[ALIAS] = connections.configure_settings({"default": config})["default"]
        try:
            with django_db_blocker.unblock():
                yield private
                connections[ALIAS].close()
        finally:
            del connections[ALIAS]
            del connections.settings[ALIAS]


@pytest.fixture(autouse=True)
def _empty_tables(server: PrivateMariaDB) -> None:
    if not server.running:
        server.start()
    reconnect()
    BounceEvent.objects.using(ALIAS).all().delete()
    EmailAddressTracker.objects.using(ALIAS).all().delete()


def reconnect() -> None:
    """Drop the ORM's connection to the private server (after a stop or a kill)."""
    connections[ALIAS].close()


def make_trackers(count: int, prefix: str = "user") -> list[EmailAddressTracker]:
    tracker_settings = get_settings()
    return EmailAddressTracker.objects.using(ALIAS).bulk_create(
        EmailAddressTracker(
            email=f"{prefix}{n}@example.org",
            encoded_from=encode_local_part(f"{prefix}{n}@example.org", tracker_settings),
        )
        for n in range(count)
    )


@dataclass(frozen=True)
class Bounce:
    """One DSN for one tracked address, as Postfix would hand it to the pipe."""

    recipient: str  # the VERP bounce address
    message: bytes


def bounces_for(trackers: list[EmailAddressTracker], per_address: int = 1) -> list[Bounce]:
    tracker_settings = get_settings()
    result = []
    for tracker in trackers:
        verp = return_path(tracker.encoded_from, tracker_settings)
        for n in range(per_address):
            diagnostic = f"smtp; 452 4.2.2 <{tracker.email}>: Mailbox full (report {n})"
            message = messages.dsn(
                tracker.email, status="4.2.2", diagnostic=diagnostic, return_path=verp
            )
            result.append(Bounce(verp, message))
    return result


def handle_bounce(
    server: PrivateMariaDB,
    bounce: Bounce,
    *,
    settings_module: str = "tests.settings",
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    env = django_environment(server.url(), DJANGO_SETTINGS_MODULE=settings_module)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "django", "handle_bounce", "--", "", bounce.recipient],
        input=bounce.message,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def start_handler(
    server: PrivateMariaDB, bounce: Bounce, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``handle_bounce`` started in the background, the message on its stdin."""
    with tempfile.TemporaryFile() as stdin:
        stdin.write(bounce.message)
        stdin.seek(0)
        return subprocess.Popen(
            [sys.executable, "-m", "django", "handle_bounce", "--", "", bounce.recipient],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env or django_environment(server.url()),
        )


def finish(handler: subprocess.Popen[bytes], timeout: float = 120) -> tuple[int, bytes]:
    """(exit status, stderr) of a handler from :func:`start_handler`."""
    _, stderr = handler.communicate(timeout=timeout)
    return handler.returncode, stderr


@dataclass
class DeliveryLog:
    """What a Postfix-like delivery loop saw: exit statuses and attempts per bounce."""

    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int) -> None:
        with self.lock:
            self.statuses.append(status)

    @property
    def tempfails(self) -> int:
        return self.statuses.count(EX_TEMPFAIL)


def deliver_until_done(
    attempt: Callable[[Bounce], int],
    bounces: list[Bounce],
    log: DeliveryLog,
    *,
    workers: int = 6,
    retry_delay: float = 0.5,
    max_attempts: int = 120,
) -> None:
    """Deliver every bounce, again after each 75, like Postfix does (but faster)."""

    def deliver(bounce: Bounce) -> None:
        for _ in range(max_attempts):
            status = attempt(bounce)
            log.add(status)
            assert status in (0, EX_TEMPFAIL), f"exit status {status}"
            if status == 0:
                return
            time.sleep(retry_delay)
        raise AssertionError(f"still 75 after {max_attempts} attempts")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(deliver, bounces))


def totals() -> tuple[int, int]:
    """(events, sum of bounce_count) in the private database."""
    reconnect()
    events = BounceEvent.objects.using(ALIAS).count()
    counts = EmailAddressTracker.objects.using(ALIAS).values_list("bounce_count", flat=True)
    return events, sum(counts)


# --- The database down, restarted, crashed ----------------------------------------------


def test_database_down_every_handler_exits_75_and_redelivery_records_exactly_100(server):
    trackers = make_trackers(100)
    bounces = bounces_for(trackers)
    server.stop()

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        down = list(pool.map(lambda b: handle_bounce(server, b), bounces))
    seconds_down = time.monotonic() - started
    assert {r.returncode for r in down} == {EX_TEMPFAIL}
    assert all(r.stderr.startswith(b"bounce not recorded, Postfix will retry") for r in down)
    assert all(b"Traceback" not in r.stderr for r in down)

    server.start()
    assert totals() == (0, 0)
    with ThreadPoolExecutor(8) as pool:
        up = list(pool.map(lambda b: handle_bounce(server, b), bounces))
    assert {(r.returncode, r.stderr) for r in up} == {(0, b"")}
    assert totals() == (100, 100)
    reconnect()
    assert set(EmailAddressTracker.objects.using(ALIAS).values_list("bounce_count", flat=True)) == {
        1
    }

    # Postfix may deliver a message again after a lost reply: still 100.
    with ThreadPoolExecutor(8) as pool:
        again = list(pool.map(lambda b: handle_bounce(server, b), bounces[::10]))
    assert {r.returncode for r in again} == {0}
    assert totals() == (100, 100)
    print(f"\n100 handlers against a stopped database: {seconds_down:.1f} s, all exit 75")


def test_database_crashed_and_restarted_during_200_bounces_loses_and_doubles_nothing(server):
    trackers = make_trackers(20)
    bounces = bounces_for(trackers, per_address=10)
    log = DeliveryLog()

    def restart_when_under_way() -> None:
        wait_until(lambda: len(log.statuses) >= 40, 120, "40 deliveries")
        server.restart(crash=True, down_for=2)

    restarter = threading.Thread(target=restart_when_under_way)
    restarter.start()
    deliver_until_done(lambda b: handle_bounce(server, b).returncode, bounces, log)
    restarter.join()

    assert totals() == (200, 200)
    reconnect()
    assert set(EmailAddressTracker.objects.using(ALIAS).values_list("bounce_count", flat=True)) == {
        10
    }
    assert log.tempfails > 0, "the restart should have made some handlers exit 75"
    print(f"\npipe: 200 bounces, {log.tempfails} exits 75 in the crash, {len(log.statuses)} runs")


# --- Locks held by someone else ---------------------------------------------------------


@contextlib.contextmanager
def lock_wait_timeout(server: PrivateMariaDB, seconds: int) -> Iterator[None]:
    [(before,)] = server.query("SELECT @@GLOBAL.innodb_lock_wait_timeout")
    server.query(f"SET GLOBAL innodb_lock_wait_timeout = {int(seconds)}")
    try:
        yield
    finally:
        server.query(f"SET GLOBAL innodb_lock_wait_timeout = {int(before)}")


def test_a_lock_wait_timeout_exits_75_and_the_retry_records_once(server):
    [tracker] = make_trackers(1)
    [bounce] = bounces_for([tracker])
    holder = server.connect()
    with lock_wait_timeout(server, 2):
        cursor = holder.cursor()
        cursor.execute("BEGIN")
        cursor.execute(
            "SELECT id FROM bounce_tracker_emailaddresstracker WHERE id = %s FOR UPDATE",
            (tracker.pk,),
        )
        result = handle_bounce(server, bounce)
        assert result.returncode == EX_TEMPFAIL
        assert b"1205" in result.stderr
        assert b"Lock wait timeout" in result.stderr
        cursor.execute("ROLLBACK")
    holder.close()
    assert totals() == (0, 0)

    retried = handle_bounce(server, bounce)
    assert (retried.returncode, retried.stderr) == (0, b"")
    assert totals() == (1, 1)


def innodb_deadlocks(server: PrivateMariaDB) -> int:
    [(count,)] = server.query(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
        "WHERE VARIABLE_NAME = 'INNODB_DEADLOCKS'"
    )
    return int(count)


def test_a_deadlock_victim_is_retried_in_process_and_recorded_once(server):
    """A real deadlock (1213) with the handler as InnoDB's victim.

    The test's transaction inserts an event with the fingerprint the handler will
    write (for another address); the handler locks its tracker row and waits at its
    own INSERT; the test then asks for that tracker row: a cycle. The test's
    transaction has written 2,000 more rows, so InnoDB rolls back the lighter one,
    the handler's. The handler runs its transaction again (it waits for the row until
    the test rolls back) and records the bounce once, exit 0.
    """
    tracker, other = make_trackers(2)
    [bounce] = bounces_for([tracker])
    event_fingerprint = fingerprint(
        read_message(io.BytesIO(bounce.message), 10**7), bounce.recipient
    )
    deadlocks_before = innodb_deadlocks(server)
    server.query("CREATE TABLE IF NOT EXISTS ballast (id INT PRIMARY KEY) ENGINE=InnoDB")
    handler = None
    try:
        with transaction.atomic(using=ALIAS):
            connections[ALIAS].cursor().executemany(
                "INSERT INTO ballast VALUES (%s)", [(n,) for n in range(2000)]
            )
            BounceEvent.objects.using(ALIAS).create(
                tracker=other, kind="soft", envelope_recipient="x", fingerprint=event_fingerprint
            )
            handler = start_handler(server, bounce)
            # The handler, at its INSERT of the same fingerprint:
            wait_for_blocked_query(server, "INSERT INTO `bounce_tracker_bounceevent`")
            # Closes the cycle; InnoDB rolls the handler back and grants the row here.
            list(EmailAddressTracker.objects.using(ALIAS).select_for_update().filter(pk=tracker.pk))
            # The handler's second attempt, waiting for the tracker row:
            wait_for_blocked_query(server, "SELECT `bounce_tracker_emailaddresstracker`.`id`")
            transaction.set_rollback(True, using=ALIAS)
        status, stderr = finish(handler)
    finally:
        if handler is not None and handler.poll() is None:
            handler.kill()
            finish(handler)
        server.query("DROP TABLE ballast")

    assert innodb_deadlocks(server) == deadlocks_before + 1
    assert (status, stderr) == (0, b"")
    assert totals() == (1, 1)


# --- A handler killed with SIGKILL ------------------------------------------------------


@pytest.mark.parametrize("pause_at", ["before_commit", "after_commit"])
def test_a_handler_killed_mid_delivery_is_recorded_once_on_redelivery(server, pause_at, tmp_path):
    [tracker] = make_trackers(1)
    [bounce] = bounces_for([tracker])
    marker = tmp_path / "paused"
    env = django_environment(
        server.url(),
        DJANGO_SETTINGS_MODULE="tests.fault_settings",
        BOUNCE_TRACKER_TEST_PAUSE_AT=pause_at,
        BOUNCE_TRACKER_TEST_PAUSE_FILE=str(marker),
    )
    handler = start_handler(server, bounce, env)
    wait_until(marker.exists, 60, f"the handler to pause {pause_at.replace('_', ' ')}")
    os.kill(handler.pid, signal.SIGKILL)
    assert finish(handler)[0] == -signal.SIGKILL

    # The server notices the dropped connection and rolls back what was not committed.
    wait_until(
        lambda: not server.query("SELECT 1 FROM information_schema.innodb_trx"), 30, "rollback"
    )
    assert totals() == ((0, 0) if pause_at == "before_commit" else (1, 1))

    redelivered = handle_bounce(server, bounce)
    assert (redelivered.returncode, redelivered.stderr) == (0, b"")
    assert totals() == (1, 1)


# --- Many at once on one address -------------------------------------------------------


def assert_last_bounces_are_the_three_newest_events(tracker_pk: int, count: int) -> None:
    reconnect()
    tracker = EmailAddressTracker.objects.using(ALIAS).get(pk=tracker_pk)
    assert tracker.bounce_count == count
    newest = list(
        BounceEvent.objects.using(ALIAS)
        .filter(tracker_id=tracker_pk)
        .order_by("-received_at")
        .values_list("received_at", flat=True)[:3]
    )
    assert len(set(newest)) == 3
    assert [tracker.last_bounce, tracker.last_bounce2, tracker.last_bounce3] == newest
    first = BounceEvent.objects.using(ALIAS).filter(tracker_id=tracker_pk).earliest("received_at")
    assert tracker.first_bounce == first.received_at


def test_twenty_handler_processes_at_once_on_one_address_count_twenty(server):
    [tracker] = make_trackers(1)
    bounces = bounces_for([tracker], per_address=20)
    handlers = [start_handler(server, bounce) for bounce in bounces]
    assert [finish(handler) for handler in handlers] == [(0, b"")] * 20
    assert totals() == (20, 20)
    assert_last_bounces_are_the_three_newest_events(tracker.pk, 20)


@contextlib.contextmanager
def resident_receiver(server: PrivateMariaDB) -> Iterator[int]:
    """``receive_bounces`` as a process on a free port, on the private database."""
    process, port = start_command(url=server.url())
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()


def lmtp_deliver(port: int, bounce: Bounce) -> int:
    """One LMTP transaction; 0 for a 250 reply, 75 for anything Postfix would retry."""
    try:
        with smtplib.LMTP("127.0.0.1", port, timeout=60) as client:
            refused = client.sendmail("", [bounce.recipient], bounce.message)
    except (smtplib.SMTPException, OSError):
        return EX_TEMPFAIL
    return EX_TEMPFAIL if refused else 0


def test_twenty_lmtp_sessions_at_once_on_one_address_count_twenty(server):
    [tracker] = make_trackers(1)
    bounces = bounces_for([tracker], per_address=20)
    with resident_receiver(server) as port:
        barrier = threading.Barrier(20)

        def deliver(bounce: Bounce) -> int:
            barrier.wait(timeout=30)
            return lmtp_deliver(port, bounce)

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(deliver, bounces))
    assert statuses == [0] * 20
    assert totals() == (20, 20)
    assert_last_bounces_are_the_three_newest_events(tracker.pk, 20)


def test_the_resident_receiver_through_a_database_restart_loses_and_doubles_nothing(server):
    trackers = make_trackers(20)
    bounces = bounces_for(trackers, per_address=10)
    log = DeliveryLog()
    with resident_receiver(server) as port:

        def restart_when_under_way() -> None:
            wait_until(lambda: len(log.statuses) >= 60, 120, "60 deliveries")
            server.restart(down_for=2)  # a clean shutdown, 451s while it is down

        restarter = threading.Thread(target=restart_when_under_way)
        restarter.start()
        deliver_until_done(lambda b: lmtp_deliver(port, b), bounces, log, workers=10)
        restarter.join()

    assert totals() == (200, 200)
    assert log.tempfails > 0, "the restart should have made some deliveries get 451"
    print(f"\nLMTP: 200 bounces, {log.tempfails} got 451 during the restart")


# --- Through a real Postfix -----------------------------------------------------------


@pytest.mark.postfix
def test_postfix_keeps_100_dsns_while_the_database_is_down_and_a_flush_records_them(server):
    """Real DSNs from a real Postfix, piped to ``handle_bounce`` while the database is
    stopped: all 100 deferred (75), none recorded; after a restart and
    ``postqueue -f``, exactly 100 recorded and the queue is empty."""
    trackers = make_trackers(100)
    tracker_settings = get_settings()
    server.stop()
    with (
        readable_installation() as (python, pythonpath),
        SmtpSink() as remote,
    ):
        remote.state.replies["@remote.example"] = (
            "550 5.1.1 Recipient address rejected: User unknown"
        )
        pipe = PipeOptions(
            python=python,
            manage_py=str(Path(pythonpath) / "example_project" / "manage.py"),
            environment={
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "PYTHONPATH": pythonpath,
                "DATABASE_URL": server.url(),
            },
        )
        postfix = PostfixInstance(
            pipe, tracker_settings, routes={"remote.example": f"smtp:[127.0.0.1]:{remote.port}"}
        )
        postfix.start("hold")
        try:
            with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as client:
                for n, tracker in enumerate(trackers):
                    client.sendmail(
                        return_path(tracker.encoded_from, tracker_settings),
                        [f"user{n}@remote.example"],
                        f"From: news@example.com\r\nTo: user{n}@remote.example\r\n"
                        f"Subject: Issue {n}\r\n\r\nHello.\r\n".encode(),
                    )
            deferred = postfix.wait_for_log(
                r"relay=bouncehandler.*status=deferred", timeout=240, count=100
            )
            assert all("Postfix will retry" in line for line in deferred)
            assert len(postfix.queue()) == 100

            server.start()
            assert totals() == (0, 0)
            postfix.flush()
            wait_until(lambda: totals() == (100, 100), 240, "100 recorded bounces")
            wait_until(lambda: not postfix.queue(), 60, "the queue to empty")
            postfix.wait_for_log(r"relay=bouncehandler.*status=sent", count=100)
        finally:
            postfix.stop()
    assert totals() == (100, 100)
    reconnect()
    assert set(BounceEvent.objects.using(ALIAS).values_list("kind", "status", "source")) == {
        ("hard", "5.1.1", "pipe")
    }


# --- Sending while the database is down ------------------------------------------------

SEND_SCRIPT = """
import json, os, sys
import django
django.setup()
from django.core import mail
from django.test import override_settings
tracker = {**django.conf.settings.BOUNCE_TRACKER, **json.loads(os.environ["TRACKER"])}
with override_settings(BOUNCE_TRACKER=tracker, EMAIL_HOST="127.0.0.1",
                       EMAIL_PORT=int(os.environ["SMTP_PORT"])):
    try:
        sent = mail.send_mail("Invoice", "Hello.", "shop@example.com", ["Buyer@Example.org"],
                              fail_silently=os.environ["FAIL_SILENTLY"] == "1")
    except Exception as exc:
        print(json.dumps({"raised": type(exc).__name__}))
    else:
        print(json.dumps({"sent": sent}))
"""


def send_with_database_down(
    server: PrivateMariaDB, mode: str, *, fail_silently: bool = False
) -> tuple[dict[str, object], str, list[str]]:
    """Send one message from a process whose database is down; (result, log, MAIL FROMs)."""
    with SmtpSink() as remote:
        env = django_environment(
            server.url(),
            TRACKER=json.dumps(
                {
                    "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                    "SEND_WHEN_DATABASE_DOWN": mode,
                }
            ),
            SMTP_PORT=str(remote.port),
            FAIL_SILENTLY="1" if fail_silently else "0",
        )
        process = subprocess.run(
            [sys.executable, "-c", SEND_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        envelopes = [t.mail_from for t in remote.state.transactions]
    return json.loads(process.stdout), process.stderr, envelopes


@pytest.mark.parametrize("fail_silently", [False, True])
def test_sending_while_the_database_is_down_fails_and_sends_nothing_by_default(
    server, fail_silently
):
    server.stop()
    result, log, envelopes = send_with_database_down(server, "fail", fail_silently=fail_silently)
    assert result == ({"sent": 0} if fail_silently else {"raised": "OperationalError"})
    assert envelopes == []
    assert "The tracking database is unavailable: 1 message(s) not sent" in log


def test_sending_while_the_database_is_down_can_send_untracked(server):
    server.stop()
    result, log, envelopes = send_with_database_down(server, "send_untracked")
    assert result == {"sent": 1}
    # The return path a tracked address gets, so its bounces still match once tracked.
    local_part = encode_local_part("buyer@example.org", get_settings())
    assert envelopes == [return_path(local_part, get_settings())]
    assert "sending 1 message(s) untracked" in log

    server.start()
    reconnect()
    assert not EmailAddressTracker.objects.using(ALIAS).exists()
