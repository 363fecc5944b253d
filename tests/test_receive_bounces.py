"""``receive_bounces``: the resident LMTP receiver, in-process and as Postfix runs it."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.receiving.lmtp import service
from bounce_tracker.receiving.lmtp.service import (
    listening_socket,
    parse_addrport,
    serve,
)
from bounce_tracker.receiving.reporting import command_logging
from tests import messages
from tests.postfix_harness import free_port, wait_until
from tests.test_handle_bounce import database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
VERP = "bounces+abc@bounces.example.com"
UNKNOWN = "bounces+unknowntoken@bounces.example.com"
SQLITE_THREADS = pytest.mark.skipif(
    connection.vendor == "sqlite",
    reason="needs a database server: SQLite has one writer, so concurrent sessions get "
    "'database is locked' and a 451 (correct: Postfix retries), not all 250 at once",
)


class InProcessReceiver:
    """``serve()`` on a free port of 127.0.0.1, in a thread with its own event loop."""

    def __init__(self, max_bytes: int = 5 * 1024 * 1024, threads: int = 4) -> None:
        self.max_bytes = max_bytes
        self.threads = threads
        self.sock = listening_socket(("127.0.0.1", 0), None)
        self.port = self.sock.getsockname()[1]
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(
                self.sock,
                threads=self.threads,
                max_bytes=self.max_bytes,
                tracker_settings=get_settings(),
                stop=self._stop,
                started=lambda server: self._ready.set(),
                grace=10,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __exit__
            self.error = exc
            self._ready.set()

    def __enter__(self) -> InProcessReceiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        self.sock.close()
        assert not self._thread.is_alive()
        assert self.error is None, self.error

    def client(self) -> smtplib.LMTP:
        client = smtplib.LMTP("127.0.0.1", self.port, timeout=30)
        client.ehlo("client.test")
        return client


def transaction(
    client: smtplib.LMTP, recipients: list[str], data: bytes, sender: str = ""
) -> list[tuple[int, bytes]]:
    """MAIL, RCPT…, DATA; LMTP's one reply per recipient after the final dot.

    (smtplib.LMTP reads only one reply after DATA, so the rest are read here.)
    """
    code, reply = client.mail(sender)
    assert code == 250, reply
    for recipient in recipients:
        code, reply = client.rcpt(recipient)
        assert code == 250, reply
    client.putcmd("data")
    code, reply = client.getreply()
    assert code == 354, reply
    body = smtplib.quotedata(data.decode("latin-1")).encode("latin-1")
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    client.send(body + b".\r\n")
    return [client.getreply() for _ in recipients]


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


@pytest.fixture
def receiver():
    with InProcessReceiver() as running:
        yield running


def test_addrport_forms():
    assert parse_addrport("10025") == ("127.0.0.1", 10025)
    assert parse_addrport("0.0.0.0:24") == ("0.0.0.0", 24)
    assert parse_addrport("[::1]:10025") == ("::1", 10025)


def test_a_bad_addrport_is_a_value_error_the_command_turns_into_a_command_error():
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_addrport("host:99999")
    with pytest.raises(CommandError, match="'here:there' is not HOST:PORT"):
        call_command("receive_bounces", "here:there")


def test_lhlo_announces_pipelining_enhanced_codes_and_size(receiver):
    client = receiver.client()
    assert client.does_esmtp
    for extension in ("pipelining", "enhancedstatuscodes", "8bitmime"):
        assert client.has_extn(extension)
    assert client.esmtp_features["size"] == str(receiver.max_bytes)
    client.quit()


def test_a_hard_bounce_is_recorded_counted_and_suppresses(receiver, tracker):
    client = receiver.client()
    [(code, reply)] = transaction(client, [VERP], messages.dsn())
    client.quit()
    assert code == 250
    assert reply.startswith(b"2.0.0 <" + VERP.encode() + b"> recorded")
    tracker.refresh_from_db()
    assert (tracker.bounce_count, tracker.suppressed_reason) == (1, "hard")
    event = BounceEvent.objects.get()
    assert (event.kind, event.source, event.envelope_recipient) == ("hard", "lmtp", VERP)
    assert b"\r\n" not in bytes(event.raw_message)  # stored as the pipe stores it


def test_the_same_message_twice_is_a_250_duplicate_counted_once(receiver, tracker):
    raw = messages.dsn()
    client = receiver.client()
    [(first, _)] = transaction(client, [VERP], raw)
    [(second, reply)] = transaction(client, [VERP], raw)
    client.quit()
    assert (first, second) == (250, 250)
    assert b"duplicate" in reply
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert BounceEvent.objects.count() == 1


def test_lmtp_and_the_pipe_fingerprint_a_message_alike(receiver, tracker):
    """A message without Message-ID, delivered by pipe then by LMTP, counts once."""
    from bounce_tracker.receiving.receive import read_message, receive_message

    raw = b"".join(
        line for line in messages.dsn().splitlines(keepends=True) if b"Message-Id" not in line
    )
    piped = read_message(io.BytesIO(raw.replace(b"\r\n", b"\n")), 1024 * 1024)
    receive_message(piped, "", VERP)
    client = receiver.client()
    [(code, reply)] = transaction(client, [VERP], raw)
    client.quit()
    assert (code, b"duplicate" in reply) == (250, True)


def test_an_unknown_token_is_stored_as_unmatched(receiver, tracker):
    client = receiver.client()
    [(code, reply)] = transaction(client, [UNKNOWN], messages.dsn())
    client.quit()
    assert code == 250
    assert b"stored as unmatched" in reply
    assert UnmatchedMessage.objects.get().envelope_recipient == UNKNOWN
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0


def test_one_reply_per_recipient_in_rcpt_order(receiver, tracker):
    client = receiver.client()
    replies = transaction(client, [VERP, UNKNOWN], messages.dsn())
    client.quit()
    assert [code for code, _ in replies] == [250, 250]
    assert b"recorded" in replies[0][1]
    assert b"unmatched" in replies[1][1]


def test_451_for_each_recipient_when_recording_fails(receiver, tracker, monkeypatch):
    calls = []

    def unreachable(message, sender, recipient, **kwargs):
        calls.append(recipient)
        raise OperationalError("(2003, \"Can't connect to MySQL server on '127.0.0.1'\")")

    monkeypatch.setattr("bounce_tracker.receiving.receive.receive_message", unreachable)
    client = receiver.client()
    replies = transaction(client, [VERP, UNKNOWN], messages.dsn())
    assert [code for code, _ in replies] == [451, 451]
    assert replies[0][1].startswith(b"4.3.0 <" + VERP.encode() + b"> not recorded")
    assert b"OperationalError" in replies[0][1]
    monkeypatch.undo()
    # The session goes on: the next delivery (Postfix's retry) is recorded.
    [(code, _)] = transaction(client, [VERP], messages.dsn())
    client.quit()
    assert code == 250
    assert len(calls) == 2
    assert BounceEvent.objects.count() == 1


def test_dot_stuffed_lines_are_unstuffed(receiver):
    raw = b"From: a@example.org\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.one\r\nend.\r\n"
    client = receiver.client()
    [(code, _)] = transaction(client, [UNKNOWN], raw)
    client.quit()
    assert code == 250
    stored = bytes(UnmatchedMessage.objects.get().raw_message)
    assert stored == raw.replace(b"\r\n", b"\n")


def test_commands_out_of_order_and_unknown_ones_are_refused(receiver):
    client = receiver.client()
    assert client.docmd("RCPT TO:<x@example.org>")[0] == 503
    assert client.docmd("DATA")[0] == 503
    assert client.docmd("HELO x")[0] == 500
    assert client.docmd("XYZZY")[0] == 500
    assert client.docmd("MAIL", "FROM:<> SIZE=" + str(receiver.max_bytes + 1))[0] == 552
    assert client.docmd("MAIL FROM:<>")[0] == 250
    assert client.docmd("MAIL FROM:<>")[0] == 503
    assert client.docmd("RSET")[0] == 250
    assert client.docmd("NOOP")[0] == 250
    assert client.docmd("NOOP " + "x" * 5000)[0] == 500  # line too long
    assert client.docmd("NOOP")[0] == 250
    assert client.quit()[0] == 221


def test_pipelined_commands_get_their_replies_in_order(receiver, tracker):
    data = smtplib.quotedata(messages.dsn().decode()).encode()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"220 ")
        sock.sendall(
            b"LHLO client.test\r\nMAIL FROM:<>\r\nRCPT TO:<"
            + VERP.encode()
            + b">\r\nRCPT TO:<"
            + UNKNOWN.encode()
            + b">\r\nDATA\r\n"
        )
        lines = []
        while not lines or not lines[-1].startswith(b"354"):
            lines.append(stream.readline())
        codes = [line[:4] for line in lines]
        assert codes[-4:] == [b"250 ", b"250 ", b"250 ", b"354 "]
        sock.sendall(data + b"\r\n.\r\nQUIT\r\n")
        rest = [stream.readline() for _ in range(3)]
    assert [line[:3] for line in rest] == [b"250", b"250", b"221"]


def test_an_oversized_message_is_read_to_the_end_with_bounded_memory(tracker):
    line = b"x" * 998 + b"\r\n"
    chunk = line * 1024  # about 1 MB, allocated before measuring
    megabytes = 50
    head = messages.dsn()
    with InProcessReceiver(max_bytes=64 * 1024) as receiver:
        client = receiver.client()
        assert client.mail("")[0] == 250  # no SIZE= declared: the data must still be read
        assert client.rcpt(VERP)[0] == 250
        client.putcmd("data")
        assert client.getreply()[0] == 354
        tracemalloc.start()
        try:
            client.send(head)
            for _ in range(megabytes):
                client.send(chunk)
            client.send(b".\r\n")
            code, reply = client.getreply()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        client.quit()
    assert code == 250, reply
    event = BounceEvent.objects.get()
    assert event.kind == "hard"
    assert event.raw_size == len(head) - head.count(b"\r\n") + megabytes * 1024 * 999
    assert event.raw_truncated
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while receiving {megabytes} MB"


@SQLITE_THREADS
def test_ten_concurrent_sessions_are_all_recorded(receiver):
    trackers = [
        EmailAddressTracker.objects.create(
            email=f"user{n}@example.org", encoded_from=f"bounces+tok{n}"
        )
        for n in range(10)
    ]
    barrier = threading.Barrier(10)
    results: list[object] = []

    def deliver(n: int) -> None:
        try:
            client = receiver.client()
            barrier.wait(timeout=10)
            address = f"bounces+tok{n}@bounces.example.com"
            for _ in range(3):  # two new messages and one Postfix retry of the last
                raw = messages.dsn(recipient=f"user{n}@example.org", return_path=address)
                results.extend(transaction(client, [address], raw))
            results.extend(transaction(client, [address], raw))
            client.quit()
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "an LMTP client did not finish in 60 s"
    assert all(isinstance(r, tuple) and r[0] == 250 for r in results), results
    assert len(results) == 40
    for tracker in trackers:
        tracker.refresh_from_db()
        assert tracker.bounce_count == 3
    assert BounceEvent.objects.count() == 30


# --- The command, as a process -----------------------------------------------------


def start_command(
    *args: str,
    url: str | None = None,
    settings_module: str = "tests.settings",
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": url or database_url(),
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "receive_bounces", f"127.0.0.1:{port}", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1].decode())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(listening, 60, "receive_bounces to listen")
    return process, port


def test_a_database_that_is_unreachable_gets_451_and_the_process_stays_up():
    if connection.vendor == "mysql":
        url = "mysql://root:@127.0.0.1:9/nothing"
    elif connection.vendor == "postgresql":
        url = "postgres://postgres@127.0.0.1:9/nothing"
    else:
        url = "sqlite:////nonexistent-directory/for/sure/db.sqlite3"
    process, port = start_command(url=url)
    try:
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.test")
        [(code, reply)] = transaction(client, [VERP], messages.dsn())
        [(again, _)] = transaction(client, [VERP], messages.dsn())
        client.quit()
        assert (code, again) == (451, 451), reply
        assert reply.startswith(b"4.3.0 ")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert b"deferred" in err  # the log line for the message


def test_sigterm_finishes_the_message_in_flight_and_exits_0(tracker):
    process, port = start_command("--workers", "2")
    try:
        busy = smtplib.LMTP("127.0.0.1", port, timeout=30)
        busy.ehlo("client.test")
        idle = smtplib.LMTP("127.0.0.1", port, timeout=30)
        idle.ehlo("client.test")
        assert busy.mail("")[0] == 250
        assert busy.rcpt(VERP)[0] == 250
        busy.putcmd("data")
        assert busy.getreply()[0] == 354
        raw = messages.dsn()
        busy.send(raw[: len(raw) // 2])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        busy.send(raw[len(raw) // 2 :] + b".\r\n")
        code, reply = busy.getreply()
        assert code == 250, reply
        assert b"recorded" in reply
        # The idle session is closed with 421 (or the connection is gone).
        try:
            idle_code = idle.noop()[0]
        except smtplib.SMTPServerDisconnected:
            idle_code = 421
        assert idle_code == 421
        idle.close()
        busy.close()
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err.decode()
    assert err.count(b" lmtp from=<> ") == 1
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_unix_socket(tmp_path):
    path = f"/tmp/rb-{os.getpid()}-{time.monotonic_ns()}.sock"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "receive_bounces", "--unix", path],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: os.path.exists(path), 60, "the socket")
        client = smtplib.LMTP(path, timeout=30)
        client.ehlo("client.test")
        [(code, reply)] = transaction(client, [UNKNOWN], messages.dsn())
        client.quit()
        assert code == 250, reply
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    assert not os.path.exists(path)
    assert UnmatchedMessage.objects.count() == 1


def _kill_other_connections() -> int:
    """End the database sessions of other processes on the test database (a restart)."""
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            ids = [row[0] for row in cursor.fetchall()]
            for session in ids:
                cursor.execute(f"KILL {int(session)}")
            return len(ids)
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(cursor.fetchall())


@pytest.mark.skipif(connection.vendor == "sqlite", reason="needs a database server")
def test_after_the_database_drops_its_connections_the_next_message_is_recorded(tracker):
    process, port = start_command("--threads", "1")
    try:
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.test")
        [(first, _)] = transaction(client, [VERP], messages.dsn())
        assert _kill_other_connections() >= 1  # the receiver kept its connection open
        [(second, reply)] = transaction(client, [VERP], messages.dsn())
        client.quit()
        assert (first, second) == (250, 250), reply
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    tracker.refresh_from_db()
    assert tracker.bounce_count == 2


# --- Logging: the site's configuration first -----------------------------------------


class Collect(logging.Handler):
    """A site's handler (Sentry, JSON logs): keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def deliver_with_a_broken_recorder(monkeypatch) -> int:
    """One message through a receiver whose recording fails unexpectedly: the code."""

    def broken(*args):
        raise RuntimeError("a bug in recording")

    monkeypatch.setattr(service, "record_message", broken)
    with InProcessReceiver() as receiver:
        client = receiver.client()
        [(code, _)] = transaction(client, [VERP], messages.dsn())
        client.quit()
    return code


@pytest.fixture
def root_handlers():
    """The root logger's handlers, to replace for one test (pytest's are put back)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    yield root.handlers
    root.handlers[:] = saved


def test_an_error_of_the_receiver_reaches_a_handler_on_the_root_logger(root_handlers, monkeypatch):
    site = Collect()
    root_handlers[:] = [site]  # the site's LOGGING: a root handler, nothing else

    with command_logging(1, info_from=1) as added:
        code = deliver_with_a_broken_recorder(monkeypatch)

    assert (code, added) == (451, None)
    assert logging.getLogger("bounce_tracker").handlers == []
    assert logging.getLogger("bounce_tracker").propagate
    errors = [(r.name, r.getMessage()) for r in site.records if r.levelno >= logging.ERROR]
    assert errors == [("bounce_tracker.receiving.lmtp", "LMTP delivery failed")]
    assert "a bug in recording" in site.format(site.records[-1])


def test_without_a_logging_configuration_the_receiver_logs_to_stderr(
    root_handlers, monkeypatch, capsys
):
    root_handlers[:] = []  # no LOGGING at all
    logger = logging.getLogger("bounce_tracker")

    with command_logging(1, info_from=1) as added:
        assert logger.handlers == [added]
        assert logger.level == logging.INFO
        code = deliver_with_a_broken_recorder(monkeypatch)

    assert code == 451
    assert (logger.handlers, logger.level, logger.propagate) == ([], logging.NOTSET, True)
    err = capsys.readouterr().err
    assert " ERROR LMTP delivery failed\n" in err
    assert "RuntimeError: a bug in recording" in err


def test_the_command_logs_through_the_sites_root_handler_and_not_on_its_own(tmp_path):
    site_log = tmp_path / "site.log"
    process, port = start_command(
        settings_module="tests.root_logging_settings",
        env={"BOUNCE_TRACKER_TEST_SITE_LOG": str(site_log)},
    )
    try:
        client = smtplib.LMTP("127.0.0.1", port, timeout=30)
        client.ehlo("client.test")
        [(code, _)] = transaction(client, [UNKNOWN], messages.dsn())
        client.quit()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert (process.returncode, code) == (0, 250), err.decode()
    assert (out, err) == (b"", b"")  # no handler of its own
    lines = site_log.read_text().splitlines()
    assert lines[0].startswith("site-root INFO bounce_tracker: receive_bounces: LMTP on inet:")
    assert any(
        line.startswith("site-root INFO bounce_tracker: lmtp from=<> ") and "unmatched" in line
        for line in lines
    ), lines
    assert lines[-1] == "site-root INFO bounce_tracker: receive_bounces: stopped"
