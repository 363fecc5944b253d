"""``poll_bounce_mailbox`` against a real Dovecot started on loopback (tests/imap_harness.py).

Messages are put in the mailbox with IMAP APPEND; the poller reads them over IMAP,
IMAPS, IMAP with STARTTLS or POP3, and the tests look at the database and at the
mailbox afterwards. No mock of either server.
"""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection
from django.test import override_settings

from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import return_path
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.receiving.mailbox import (
    MailboxPoller,
    PollFailedError,
    PollSummary,
    bounce_address,
    header_fields,
    imap_quote,
    imap_uid_set,
    parse_mailbox_url,
    processed_folder_problem,
)
from bounce_tracker.receiving.mailbox import poller as poller_module
from bounce_tracker.receiving.mailbox.imap import IMAPReader
from bounce_tracker.receiving.settings import get_receiving_settings
from bounce_tracker.sending.tracking import ensure_trackers
from tests import messages
from tests.imap_harness import (
    PASSWORD,
    UNICODE_PASSWORD,
    UNICODE_USER,
    DovecotInstance,
    dovecot_available,
)
from tests.postfix_harness import wait_until
from tests.services import missing_service
from tests.test_handle_bounce import database_url

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bounces.example.com"


# --- The URL, the settings, the address: no server needed --------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("imap://u:p@mail.example.net", ("imap", "plain", "mail.example.net", 143, "INBOX")),
        (
            "imaps://u:p@mail.example.net/Bounces",
            ("imap", "tls", "mail.example.net", 993, "Bounces"),
        ),
        ("imap+starttls://u:p@[::1]:1143/A%20B", ("imap", "starttls", "::1", 1143, "A B")),
        ("pop3://u:p@10.0.0.1", ("pop3", "plain", "10.0.0.1", 110, "INBOX")),
        ("POP3S://u:p@pop.example.net:9995/", ("pop3", "tls", "pop.example.net", 9995, "INBOX")),
        (
            "pop3+starttls://u:p@pop.example.net",
            ("pop3", "starttls", "pop.example.net", 110, "INBOX"),
        ),
    ],
)
def test_mailbox_url_forms(url, expected):
    parsed = parse_mailbox_url(url)
    assert (parsed.protocol, parsed.security, parsed.host, parsed.port, parsed.folder) == expected


def test_user_and_password_are_percent_decoded_and_never_shown():
    parsed = parse_mailbox_url("imaps://bounce%40example.net:p%2Fa%3Fs%23s%40w@mail.example.net")
    assert (parsed.username, parsed.password) == ("bounce@example.net", "p/a?s#s@w")
    assert "p/a" not in repr(parsed)
    assert parsed.redacted() == "imaps://bounce%40example.net@mail.example.net:993/INBOX"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://u:p@host",
        "imap://host",
        "imap://u@host",
        "imap://u:secret/word@host",  # an unencoded '/' in the password
        "imap://u:p@host:99999",
        "imap://u:p@host/INBOX?x=1",
        "pop3://u:p@host/Bounces",
        "imap://u:p@host/a\nb",
        42,
    ],
)
def test_bad_mailbox_urls_are_refused_without_showing_the_password(url):
    with pytest.raises(ValueError, match=r"\.$") as raised:
        parse_mailbox_url(url)
    assert "secret" not in str(raised.value)


def test_processed_folder_rules():
    imap, pop3 = parse_mailbox_url("imap://u:p@h/Bounces"), parse_mailbox_url("pop3://u:p@h")
    assert processed_folder_problem(None, pop3) is None
    assert processed_folder_problem("Done", imap) is None
    assert processed_folder_problem("Done", pop3)
    assert processed_folder_problem("Bounces", imap)
    assert processed_folder_problem("inbox", parse_mailbox_url("imap://u:p@h"))
    assert processed_folder_problem("", None)
    assert processed_folder_problem(["Done"], None)


def test_the_delivery_headers_name_the_bounce_address_before_to_and_cc():
    fields = header_fields(
        b"To: Someone <someone@example.org>, bounces+to@Bounces.Example.COM\r\n"
        b"Cc: bounces+cc@bounces.example.com\r\n"
        b"X-Original-To: bounces+orig@bounces.example.com\r\n"
        b"Delivered-To: mailbox@mail.example.net\r\n"
        b"Subject: x\r\n\r\nTo: bounces+body@bounces.example.com\r\n"
    )
    assert bounce_address(fields, DOMAIN) == "bounces+orig@bounces.example.com"
    fields = [f for f in fields if f[0] != "x-original-to"]
    assert bounce_address(fields, DOMAIN) == "bounces+to@Bounces.Example.COM"
    assert bounce_address(header_fields(b"To: a@example.org\r\n\r\n"), DOMAIN) is None
    folded = header_fields(b"Envelope-To:\r\n bounces+env@bounces.example.com\r\n\r\n")
    assert bounce_address(folded, DOMAIN) == "bounces+env@bounces.example.com"


def test_uid_sets_and_folder_names():
    assert imap_uid_set([9, 1, 2, 3, 7, 10]) == "1:3,7,9:10"
    assert imap_quote('A "b"\\c') == '"A \\"b\\"\\\\c"'
    assert imap_quote("Entwürfe & Co") == '"Entw&APw-rfe &- Co"'


# --- A real Dovecot --------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotInstance]:
    if not dovecot_available():
        missing_service(
            "Dovecot is missing or this is not root (apt-get install dovecot-imapd dovecot-pop3d)"
        )
    server = DovecotInstance()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(dovecot: DovecotInstance) -> DovecotInstance:
    """The Dovecot with an empty INBOX and no other folders."""
    with dovecot.imap() as imap:
        _, folders = imap.list()
        for line in folders:
            name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
            if name.upper() != "INBOX":
                imap.delete(imap_quote(name))
        _, [count] = imap.select("INBOX")
        if count != b"0":
            imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            imap.expunge()
    return dovecot


pytestmark = pytest.mark.django_db(transaction=True)


def trackers(*emails: str) -> dict[str, str]:
    """``{email: VERP address}`` for new tracker rows."""
    tracker_settings = get_settings()
    rows = ensure_trackers(emails, tracker_settings)
    return {email: return_path(rows[email].encoded_from, tracker_settings) for email in emails}


def newsletter(to: str = "reader@example.org") -> bytes:
    return (
        f"From: News <news@example.net>\r\nTo: {to}\r\nSubject: This week\r\n"
        f"Message-ID: <nl-{time.time_ns()}@example.net>\r\n\r\nHello.\r\n"
    ).encode()


def reply_to(verp: str, kind=messages.auto_reply) -> bytes:
    return kind().replace(b"bounces+abc@bounces.example.com", verp.encode())


def mailbox_url(server: DovecotInstance, scheme: str = "imap") -> str:
    """The test mailbox's URL; the harness's POP3 port offers STLS too."""
    if scheme == "pop3+starttls":
        return server.url("pop3").replace("pop3://", "pop3+starttls://", 1)
    return server.url(scheme)


def poll(server: DovecotInstance, scheme: str = "imap", **kwargs) -> PollSummary:
    url = parse_mailbox_url(mailbox_url(server, scheme))
    return MailboxPoller(url, get_receiving_settings(), **kwargs).run()


def test_bounces_are_recorded_and_removed_and_other_mail_is_left_as_it_was(server):
    verp = trackers("dead@example.org", "full@example.org", "away@example.org", "dave@example.org")
    unrelated = [
        newsletter(),
        newsletter("bounces@example.com"),
        newsletter("x@bounces.example.org"),
    ]
    server.append(
        unrelated[0],
        messages.dsn(return_path=verp["dead@example.org"]),
        messages.dsn(
            "full@example.org",
            status="4.2.2",
            action="delayed",
            diagnostic="smtp; 452 4.2.2 Mailbox full",
            return_path=verp["full@example.org"],
        ),
        unrelated[1],
        reply_to(verp["away@example.org"]),
        reply_to(verp["dave@example.org"], messages.human_reply),
        messages.dsn(return_path="bounces+unknowntoken@bounces.example.com"),
        unrelated[2],
    )
    with server.imap() as imap:  # a message someone has read already stays read
        imap.select("INBOX")
        imap.store("8", "+FLAGS", r"(\Seen)")

    summary = poll(server)

    assert (summary.recorded, summary.duplicates, summary.unmatched) == (4, 0, 1)
    assert (summary.removed, summary.unrelated, summary.errors) == (5, 3, 0)
    kinds = dict(BounceEvent.objects.values_list("tracker__email", "kind"))
    assert kinds == {
        "dead@example.org": "hard",
        "full@example.org": "delayed",
        "away@example.org": "auto_reply",
        "dave@example.org": "not_bounce",
    }
    assert set(BounceEvent.objects.values_list("source", flat=True)) == {"mailbox"}
    assert BounceEvent.objects.get(kind="hard").envelope_sender == ""  # Return-Path: <>
    assert UnmatchedMessage.objects.get().source == "mailbox"
    assert EmailAddressTracker.objects.get(email="dead@example.org").suppressed_reason == "hard"
    left = server.messages()
    assert [raw for raw, _ in left] == unrelated
    assert [flags - {r"\Recent"} for _, flags in left] == [set(), set(), {r"\Seen"}]

    again = poll(server)
    assert (again.processed, again.removed, again.unrelated) == (0, 0, 3)
    assert BounceEvent.objects.count() == 4
    assert [raw for raw, _ in server.messages()] == unrelated


def test_with_a_processed_folder_recorded_messages_are_moved_there(server):
    verp = trackers("dead@example.org")
    bounce = messages.dsn(return_path=verp["dead@example.org"])
    server.append(bounce, newsletter())

    summary = poll(server, processed_folder="Bounces/Done")

    assert (summary.recorded, summary.removed) == (1, 1)
    assert "moved to Bounces/Done" in summary.line()
    assert [raw for raw, _ in server.messages("Bounces/Done")] == [bounce]
    assert server.count("INBOX") == 1


def test_without_move_and_uidplus_it_copies_flags_and_expunges(server, monkeypatch):
    verp = trackers("dead@example.org", "gone@example.org")
    server.append(
        messages.dsn(return_path=verp["dead@example.org"]),
        newsletter(),
        messages.dsn("gone@example.org", return_path=verp["gone@example.org"]),
    )
    login = IMAPReader.login
    monkeypatch.setattr(
        IMAPReader,
        "login",
        lambda self, connection: login(self, connection) - {"MOVE", "UIDPLUS"},
    )

    summary = poll(server, processed_folder="Done")

    assert (summary.recorded, summary.removed) == (2, 2)
    assert server.count("Done") == 2
    assert server.count("INBOX") == 1


class Crash(BaseException):
    """The process dies: nothing after it runs."""


def test_a_crash_after_recording_is_recovered_by_the_next_run_without_double_counting(
    server, monkeypatch
):
    verp = trackers(*(f"user{n}@example.org" for n in range(5)))
    server.append(*(messages.dsn(email, return_path=address) for email, address in verp.items()))

    def crash(*args):
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(IMAPReader, "remove", crash)
        with pytest.raises(Crash):
            poll(server)
    assert BounceEvent.objects.count() == 5
    assert server.count() == 5  # recorded, but still in the mailbox

    summary = poll(server)

    assert (summary.recorded, summary.duplicates, summary.removed) == (0, 5, 5)
    assert server.count() == 0
    assert BounceEvent.objects.count() == 5
    assert set(EmailAddressTracker.objects.values_list("bounce_count", flat=True)) == {1}


def test_a_database_error_stops_the_run_after_removing_what_was_recorded(server, monkeypatch):
    verp = trackers(*(f"user{n}@example.org" for n in range(4)))
    server.append(*(messages.dsn(email, return_path=address) for email, address in verp.items()))
    receive = poller_module.receive_message
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OperationalError("server has gone away")
        return receive(*args, **kwargs)

    monkeypatch.setattr(poller_module, "receive_message", flaky)
    with pytest.raises(CommandError, match="database error") as raised:
        call_command("poll_bounce_mailbox", url=server.url(), verbosity=0)
    assert raised.value.returncode == 75
    assert len(calls) == 3  # stopped at the failure
    assert BounceEvent.objects.count() == 2
    assert server.count() == 2  # the failed one and the one after it wait

    monkeypatch.setattr(poller_module, "receive_message", receive)
    call_command("poll_bounce_mailbox", url=server.url(), verbosity=0)
    assert BounceEvent.objects.count() == 4
    assert server.count() == 0


def test_a_message_that_fails_for_another_reason_stays_and_the_rest_goes_on(server, monkeypatch):
    verp = trackers("a@example.org", "b@example.org")
    poison = messages.dsn("a@example.org", return_path=verp["a@example.org"])
    server.append(poison, messages.dsn("b@example.org", return_path=verp["b@example.org"]))
    receive = poller_module.receive_message

    def fussy(message, sender, recipient, **kwargs):
        if recipient == verp["a@example.org"]:
            raise ValueError("classifier bug")
        return receive(message, sender, recipient, **kwargs)

    monkeypatch.setattr(poller_module, "receive_message", fussy)
    with pytest.raises(CommandError, match="1 message") as raised:
        call_command("poll_bounce_mailbox", url=server.url(), verbosity=0)
    assert raised.value.returncode == 1
    assert list(BounceEvent.objects.values_list("tracker__email", flat=True)) == ["b@example.org"]
    assert [raw for raw, _ in server.messages()] == [poison]


def test_a_message_over_max_message_bytes_is_fetched_in_part_and_recorded_truncated(server):
    verp = trackers("dead@example.org")
    huge = messages.dsn(return_path=verp["dead@example.org"]) + b"x" * 76 + b"\r\n"
    huge += (b"y" * 998 + b"\r\n") * 1500  # 1.5 MB of epilogue
    server.append(huge)
    limits = {
        "BOUNCE_DOMAIN": DOMAIN,
        "MAX_MESSAGE_BYTES": 64 * 1024,
        "RAW_MESSAGE_MAX_BYTES": 1024,
    }

    with override_settings(BOUNCE_TRACKER={**get_settings_dict(), **limits}):
        summary = poll(server)

    assert (summary.recorded, summary.removed) == (1, 1)
    event = BounceEvent.objects.get()
    assert (event.kind, event.raw_size, event.raw_truncated) == ("hard", len(huge), True)
    assert server.count() == 0


def get_settings_dict() -> dict:
    from django.conf import settings

    return dict(settings.BOUNCE_TRACKER)


def test_pop3_records_and_deletes_and_leaves_other_mail(server):
    verp = trackers("dead@example.org", "away@example.org")
    other = newsletter()
    server.append(
        messages.dsn(return_path=verp["dead@example.org"]),
        other,
        reply_to(verp["away@example.org"]),
        messages.dsn(return_path="bounces+nobody@bounces.example.com"),
    )

    summary = poll(server, "pop3")

    assert (summary.recorded, summary.unmatched, summary.removed, summary.unrelated) == (2, 1, 3, 1)
    assert [raw for raw, flags in server.messages()] == [other]
    assert r"\Seen" not in server.messages()[0][1]
    assert set(BounceEvent.objects.values_list("source", flat=True)) == {"mailbox"}
    assert poll(server, "pop3").processed == 0


@pytest.mark.parametrize("scheme", ["imaps", "imap+starttls", "pop3+starttls"])
def test_tls_verifies_the_server_certificate(server, scheme, monkeypatch):
    verp = trackers("dead@example.org")
    server.append(messages.dsn(return_path=verp["dead@example.org"]))
    with pytest.raises(PollFailedError, match="CERTIFICATE_VERIFY_FAILED"):
        poll(server, scheme)
    assert server.count() == 1

    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))  # trust the test certificate
    assert poll(server, scheme).recorded == 1
    assert server.count() == 0


@contextlib.contextmanager
def a_server_refusing_starttls(protocol: str) -> Iterator[tuple[int, list[bytes], threading.Event]]:
    """A server on loopback that offers STARTTLS (IMAP) or STLS (POP3) and refuses it.

    Yields its port, the lines it received and an event set when the client closed.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    closed = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        connection.settimeout(15)
        with connection, connection.makefile("rwb") as stream:
            stream.write(b"* OK ready\r\n" if protocol == "imap" else b"+OK ready\r\n")
            stream.flush()
            with contextlib.suppress(OSError):
                while line := stream.readline():
                    received.append(line)
                    tag, _, command = line.strip().partition(b" ")
                    if protocol == "pop3" and tag.upper() == b"CAPA":
                        stream.write(b"+OK\r\nSTLS\r\n.\r\n")
                    elif protocol == "pop3":
                        stream.write(b"-ERR not now\r\n")
                    elif command.upper() == b"CAPABILITY":
                        stream.write(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")
                    else:
                        stream.write(tag + b" NO not now\r\n")
                    stream.flush()
                closed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received, closed
    finally:
        listener.close()
        thread.join(timeout=30)
        assert not thread.is_alive()


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_refused_starttls_closes_the_connection_at_once_in_either_protocol(protocol):
    with a_server_refusing_starttls(protocol) as (port, received, closed):
        url = parse_mailbox_url(f"{protocol}+starttls://user:topsecret@127.0.0.1:{port}")
        with pytest.raises(PollFailedError, match=r"TLS session|not now") as raised:
            MailboxPoller(url, get_receiving_settings()).run()
        # Closed while the error (and the frames it holds) is still alive: not left to
        # the garbage collector, and nothing more sent in clear.
        assert closed.wait(10), "the client kept the refused connection open"
        assert raised.value is not None
    commands = [line.split()[-1].upper() for line in received]
    assert commands == ([b"CAPABILITY", b"STARTTLS"] if protocol == "imap" else [b"CAPA", b"STLS"])


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_a_password_that_is_not_ascii_works(server, scheme):
    url = server.url(scheme).replace(
        server.url(scheme).split("//")[1].split("@")[0],
        f"{quote(UNICODE_USER, safe='')}:{quote(UNICODE_PASSWORD, safe='')}",
    )
    summary = MailboxPoller(parse_mailbox_url(url), get_receiving_settings()).run()
    assert (summary.processed, summary.errors) == (0, 0)


def test_a_wrong_password_or_folder_is_a_temporary_failure_naming_no_password(server):
    bad = server.url().replace("%40", "%41")
    with pytest.raises(CommandError) as raised:
        call_command("poll_bounce_mailbox", url=bad, verbosity=0)
    assert raised.value.returncode == 75
    assert "AUTHENTICATIONFAILED" in str(raised.value) or "failed" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    with pytest.raises(CommandError, match="SELECT") as raised:
        call_command("poll_bounce_mailbox", url=server.url(folder="Nope"), verbosity=0)


def test_bad_configuration_is_a_command_error_without_the_password(settings):
    with pytest.raises(CommandError, match="No mailbox"):
        call_command("poll_bounce_mailbox")
    with pytest.raises(CommandError, match="--url is not a usable") as raised:
        call_command("poll_bounce_mailbox", url="imap://u:topsecret/x@host")
    assert "topsecret" not in str(raised.value)
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "MAILBOX_PROCESSED_FOLDER": "Done"}
    with pytest.raises(CommandError, match="POP3"):
        call_command("poll_bounce_mailbox", url="pop3://u:p@127.0.0.1:1")


# --- The command in its own process ---------------------------------------------


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "poll_bounce_mailbox", *args]


def child_env() -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
    }


def terminate(child: subprocess.Popen) -> tuple:
    """SIGTERM, then the child's output; killed when it does not stop within 30 s."""
    child.send_signal(signal.SIGTERM)
    try:
        return child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_once_prints_a_one_line_summary_and_exits_0(server):
    verp = trackers("dead@example.org")
    server.append(messages.dsn(return_path=verp["dead@example.org"]), newsletter())

    result = subprocess.run(
        command("--url", server.url()), capture_output=True, text=True, env=child_env(), timeout=120
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith(
        "poll_bounce_mailbox: 1 recorded, 0 duplicate(s), 0 unmatched, "
    )
    assert "1 removed, 1 unrelated left alone, 0 error(s)" in result.stdout
    assert result.stdout.count("\n") == 1
    quiet = subprocess.run(
        command("--url", server.url(), "-v", "0"), capture_output=True, env=child_env(), timeout=120
    )
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", b"")


def test_once_prints_nothing_when_there_was_nothing_to_do_but_with_v2(server):
    server.append(newsletter())  # other mail only: nothing recorded, stored or removed

    quiet, verbose = io.StringIO(), io.StringIO()
    call_command("poll_bounce_mailbox", url=server.url(), stdout=quiet)
    call_command("poll_bounce_mailbox", url=server.url(), verbosity=2, stdout=verbose)

    assert quiet.getvalue() == ""
    assert verbose.getvalue().startswith("poll_bounce_mailbox: 0 recorded, 0 duplicate(s), ")
    assert "0 removed, 1 unrelated left alone, 0 error(s)" in verbose.getvalue()
    assert server.count() == 1


def test_once_prints_its_summary_when_it_found_only_duplicates(server):
    verp = trackers("dead@example.org")
    bounce = messages.dsn(return_path=verp["dead@example.org"])
    server.append(bounce)
    call_command("poll_bounce_mailbox", url=server.url(), verbosity=0)
    server.append(bounce)  # delivered again: recorded before, so it goes

    out = io.StringIO()
    call_command("poll_bounce_mailbox", url=server.url(), stdout=out)

    assert out.getvalue().startswith("poll_bounce_mailbox: 0 recorded, 1 duplicate(s), ")
    assert server.count() == 0


def loop_against_an_unreachable_mailbox(settings_module: str, site_log: Path) -> tuple[str, str]:
    """Run ``--loop`` until its first failed pass is logged; its stdout and stderr."""
    stderr_path = site_log.with_name("stderr.log")
    env = {
        **child_env(),
        "DJANGO_SETTINGS_MODULE": settings_module,
        "BOUNCE_TRACKER_TEST_SITE_LOG": str(site_log),
    }
    with stderr_path.open("wb") as stderr:
        child = subprocess.Popen(
            command("--url", "pop3://u:p@127.0.0.1:1", "--loop", "--interval", "0.2"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            wait_until(
                lambda: b"trying again" in site_log.read_bytes() + stderr_path.read_bytes(),
                60,
                "the failed pass to be logged",
            )
        finally:
            out, _ = terminate(child)
    assert child.returncode == 0
    return out.decode(), stderr_path.read_text()


def test_loop_errors_reach_the_sites_root_logger_and_nothing_of_its_own(tmp_path):
    site_log = tmp_path / "site.log"
    site_log.touch()

    out, err = loop_against_an_unreachable_mailbox("tests.root_logging_settings", site_log)

    assert (out, err) == ("", "")
    errors = [line for line in site_log.read_text().splitlines() if " ERROR " in line]
    assert errors[0].startswith(
        "site-root ERROR bounce_tracker: poll_bounce_mailbox: mailbox pop3://u@127.0.0.1:1: "
        "ConnectionRefusedError"
    ), errors


def test_loop_without_a_logging_configuration_logs_its_errors_to_stderr(tmp_path):
    site_log = tmp_path / "site.log"
    site_log.touch()

    out, err = loop_against_an_unreachable_mailbox("tests.settings", site_log)

    assert out == ""
    assert site_log.read_text() == ""
    assert " ERROR poll_bounce_mailbox: mailbox pop3://u@127.0.0.1:1: ConnectionRefused" in err


def test_a_poller_killed_mid_run_loses_nothing_and_counts_nothing_twice(server):
    total = 400
    verp = trackers(*(f"user{n}@example.org" for n in range(total)))
    server.append(*(messages.dsn(email, return_path=address) for email, address in verp.items()))
    child = subprocess.Popen(command("--url", server.url()), env=child_env())
    try:
        wait_until(lambda: BounceEvent.objects.count() >= 20, 60, "the poller to record some")
    finally:
        child.kill()
        child.wait(timeout=30)
    recorded_before = BounceEvent.objects.count()
    assert recorded_before < total, "the poller finished before it was killed; add messages"
    left = server.count()

    summary = poll(server)

    assert summary.recorded == total - recorded_before
    assert summary.duplicates == left - summary.recorded  # recorded, killed before removal
    assert summary.removed == left
    assert server.count() == 0
    assert BounceEvent.objects.count() == total
    assert set(EmailAddressTracker.objects.values_list("bounce_count", flat=True)) == {1}


def test_loop_mode_picks_up_new_mail_and_stops_on_sigterm(server):
    verp = trackers("first@example.org", "second@example.org")
    server.append(messages.dsn("first@example.org", return_path=verp["first@example.org"]))
    child = subprocess.Popen(
        command("--url", server.url(), "--loop", "--interval", "0.2"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: server.count() == 0, 60, "the first bounce to be taken")
        server.append(messages.dsn("second@example.org", return_path=verp["second@example.org"]))
        wait_until(lambda: server.count() == 0, 60, "the second bounce to be taken")
        assert BounceEvent.objects.count() == 2
    finally:
        out, err = terminate(child)
    assert child.returncode == 0, err
    assert out.count("1 recorded") == 2, out


def test_throughput_of_500_dsns(server, capsys):
    verp = trackers(*(f"user{n}@example.org" for n in range(500)))
    server.append(*(messages.dsn(email, return_path=address) for email, address in verp.items()))

    summary = poll(server)

    assert (summary.recorded, summary.removed, summary.errors) == (500, 500, 0)
    rate = summary.processed / summary.seconds
    with capsys.disabled():
        print(
            f"\npoll_bounce_mailbox ({connection.vendor}): 500 DSNs over IMAP in "
            f"{summary.seconds:.2f} s = {rate:.0f} messages/s"
        )
    assert server.count() == 0
