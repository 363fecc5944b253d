"""``handle_bounce`` run the way Postfix runs it: a new process, the message on stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from tests import messages

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent
VERP = "bounces+abc@bounces.example.com"


def database_url() -> str:
    """The test database, as a URL for the child process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    scheme = {"mysql": "mysql", "postgresql": "postgres"}[connection.vendor]
    return f"{scheme}://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def handle_bounce(
    stdin: bytes | BinaryIO, *args: str, url: str | None = None, peak_rss_file: str = ""
) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",  # Postfix's pipe sets little more than this
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url or database_url(),
    }
    runner = ["-m", "django"]
    if peak_rss_file:
        env["PEAK_RSS_FILE"] = peak_rss_file
        runner = ["-m", "tests.peak_rss"]
    argv = args or ("--", "MAILER-DAEMON", VERP)
    stdin_args = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
    return subprocess.run(
        [sys.executable, *runner, "handle_bounce", *argv],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
        **stdin_args,
    )


@pytest.fixture
def tracker():
    return EmailAddressTracker.objects.create(email="dead@example.org", encoded_from="bounces+abc")


def test_a_hard_bounce_exits_0_quietly_counts_and_suppresses(tracker):
    result = handle_bounce(messages.dsn())
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert tracker.suppressed_reason == "hard"


def test_the_same_bytes_twice_count_once(tracker):
    raw = messages.dsn()
    assert handle_bounce(raw).returncode == 0
    assert handle_bounce(raw).returncode == 0
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert BounceEvent.objects.count() == 1


@pytest.mark.parametrize("sender", ["", "MAILER-DAEMON", "-looks-like-an-option@example.net"])
def test_the_sender_may_be_empty_mailer_daemon_or_start_with_a_dash(tracker, sender):
    result = handle_bounce(messages.dsn(), "--", sender, VERP.upper())
    assert result.returncode == 0, result.stderr
    assert BounceEvent.objects.get().envelope_sender == sender


def test_auto_reply_delay_success_and_spam_are_recorded_not_counted(tracker):
    for raw in (
        messages.auto_reply(),
        messages.dsn(status="4.4.1", action="delayed", diagnostic="X-Postfix; timed out"),
        messages.dsn(status="2.0.0", action="delivered", diagnostic="smtp; 250 2.0.0 Ok"),
        messages.human_reply(),
    ):
        assert handle_bounce(raw).returncode == 0
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0
    assert sorted(BounceEvent.objects.values_list("kind", flat=True)) == [
        "auto_reply",
        "delayed",
        "delivered",
        "not_bounce",
    ]


def test_soft_bounces_count_and_reach_the_policy_threshold(tracker):
    for _ in range(3):
        raw = messages.dsn(status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
        assert handle_bounce(raw).returncode == 0
    tracker.refresh_from_db()
    assert tracker.bounce_count == 3
    assert tracker.suppressed_reason == ""
    from bounce_tracker.core.settings import get_settings
    from bounce_tracker.policy import evaluate

    assert not evaluate(tracker, get_settings()).send


@pytest.mark.parametrize("raw", [b"", b"\x00\x01\x02\xff" * 100, messages.dsn()])
def test_unknown_tokens_garbage_and_empty_input_exit_0_and_change_no_tracker(tracker, raw):
    result = handle_bounce(raw, "--", "", "bounces+unknowntoken@bounces.example.com")
    assert result.returncode == 0, result.stderr
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0
    assert tracker.suppressed_reason == ""
    assert UnmatchedMessage.objects.count() == 1


def test_a_database_on_a_closed_port_exits_75_with_one_line_and_records_nothing(tracker):
    closed = (
        "mysql://root:@127.0.0.1:9/nothing"
        if connection.vendor == "mysql"
        else ("postgres://postgres@127.0.0.1:9/nothing")
    )
    result = handle_bounce(messages.dsn(), url=closed)
    assert result.returncode == 75
    assert result.stdout == b""
    assert len(result.stderr.splitlines()) == 1
    assert b"Postfix will retry" in result.stderr
    assert BounceEvent.objects.count() == 0


@pytest.mark.parametrize("argv", [("--",), ("--", "only-one-argument"), ("--bogus", "a", "b")])
def test_bad_arguments_exit_75_never_2(argv):
    result = handle_bounce(b"message", *argv)
    assert result.returncode == 75
    assert len(result.stderr.splitlines()) == 1


def test_a_message_far_larger_than_the_cap_is_read_fully_with_bounded_memory(tracker, tmp_path):
    size = 100 * 1024 * 1024
    big_file = tmp_path / "big.eml"
    with big_file.open("wb") as out:
        out.write(messages.dsn())
        out.truncate(size)  # zero bytes after the report, without holding them in memory
    peak_file = tmp_path / "peak"
    with big_file.open("rb") as stdin:
        result = handle_bounce(stdin, peak_rss_file=str(peak_file))
    assert result.returncode == 0, result.stderr
    peak_kib = int(peak_file.read_text())
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"
    event = BounceEvent.objects.get()
    assert event.raw_size == size
    assert event.kind == "hard"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.builds(
            lambda raw, cut, junk: raw[:cut] + junk + raw[cut:],
            st.just(messages.dsn()),
            st.integers(0, 2500),
            st.binary(max_size=200),
        ),
    )
)
def test_random_and_mutated_messages_never_exit_other_than_0_or_75(tracker, raw):
    result = handle_bounce(raw)
    assert result.returncode in (0, 75)
    assert b"Traceback" not in result.stderr


def test_the_probe_reads_no_message_records_nothing_and_says_where_it_would_record(tracker):
    from django.apps import apps

    from bounce_tracker.receiving.probe import database_label

    label = database_label()
    tables = len(list(apps.get_app_config("bounce_tracker").get_models()))
    result = handle_bounce(messages.dsn(), "--probe", "--expect-database", label)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == f"the pipe can record bounces in {label} ({tables} tables)\n"
    assert result.stderr == b""
    tracker.refresh_from_db()
    assert (tracker.bounce_count, BounceEvent.objects.count()) == (0, 0)
    assert UnmatchedMessage.objects.count() == 0


def test_the_probe_fails_with_75_on_another_database_than_expected(tracker):
    result = handle_bounce(b"", "--probe", "--expect-database", "mysql elsewhere")
    assert result.returncode == 75
    assert result.stderr.decode().startswith("probe failed: other-database: ")
    assert len(result.stderr.splitlines()) == 1


def test_the_probe_fails_with_75_when_the_tables_are_missing(tmp_path):
    url = f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}"
    result = handle_bounce(b"", "--probe", url=url)
    assert result.returncode == 75
    assert result.stderr.decode().startswith("probe failed: tables: bounce_tracker_")
    assert b"no such table" in result.stderr


def test_without_sender_and_recipient_the_command_exits_75():
    result = handle_bounce(b"message", "-v", "1")
    assert result.returncode == 75
    assert b"expected SENDER RECIPIENT" in result.stderr
