"""Retention: ``manage.py prune_bounce_events`` and :mod:`bounce_tracker.ops.retention`.

Runs on every database; the concurrency test and the throughput figure need a
database server (SQLite has one writer).
"""

from __future__ import annotations

import io
import itertools
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.utils import timezone

from bounce_tracker.management.commands import prune_bounce_events as prune_command
from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage
from bounce_tracker.ops import retention
from bounce_tracker.ops.retention import (
    MIN_RETENTION_DAYS,
    RetentionError,
    cap_raw_bytes,
    delete_events_older_than,
    delete_unmatched_older_than,
    parse_size,
    prune,
    strip_raw_older_than,
)
from bounce_tracker.receiving.receive import Outcome, read_message, receive_message
from bounce_tracker.receiving.settings import get_receiving_settings
from tests import messages

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
_fingerprints = itertools.count(1)
server_only = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="needs a database server; SQLite has one writer"
)


def tracker(local_part: str = "bounces+abc", **fields: object) -> EmailAddressTracker:
    return EmailAddressTracker.objects.create(
        email=f"{local_part.replace('+', '.')}@example.org", encoded_from=local_part, **fields
    )


def _received(received_at: datetime, raw: bytes) -> dict[str, object]:
    return {
        "envelope_recipient": "bounces+abc@bounces.example.com",
        "fingerprint": f"fp-{next(_fingerprints):060d}",
        "received_at": received_at,
        "raw_message": raw,
        "raw_size": len(raw),
    }


def event(
    owner: EmailAddressTracker, received_at: datetime, raw: bytes = b"x" * 100
) -> BounceEvent:
    return BounceEvent.objects.create(tracker=owner, kind="soft", **_received(received_at, raw))


def unmatched(received_at: datetime, raw: bytes = b"y" * 100) -> UnmatchedMessage:
    return UnmatchedMessage.objects.create(reason="no match", **_received(received_at, raw))


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("prune_bounce_events", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def receive(raw: bytes, local_part: str = "bounces+abc") -> Outcome:
    message = read_message(io.BytesIO(raw), get_receiving_settings().max_message_bytes)
    return receive_message(message, "", f"{local_part}@bounces.example.com").outcome


# --- what is deleted, stripped and kept --------------------------------------------


@pytest.mark.django_db
def test_events_received_before_the_cutoff_are_deleted_and_the_cutoff_itself_is_kept():
    owner = tracker()
    cutoff = NOW - timedelta(days=30)
    very_old, just_before = event(owner, cutoff - timedelta(days=400)), event(owner, cutoff - US)
    at_cutoff, just_after, new = event(owner, cutoff), event(owner, cutoff + US), event(owner, NOW)

    counts = delete_events_older_than(30, now=NOW, batch_size=1)

    assert (counts.rows, counts.bytes) == (2, 200)
    remaining = set(BounceEvent.objects.values_list("pk", flat=True))
    assert remaining == {at_cutoff.pk, just_after.pk, new.pk}
    assert very_old.pk not in remaining
    assert just_before.pk not in remaining
    assert UnmatchedMessage.objects.count() == 0


@pytest.mark.django_db
def test_unmatched_messages_received_before_their_cutoff_are_deleted_and_events_are_not():
    owner = tracker()
    cutoff = NOW - timedelta(days=10)
    old_event = event(owner, cutoff - timedelta(days=5))
    unmatched(cutoff - timedelta(days=1))
    unmatched(cutoff - US)
    kept = [unmatched(cutoff), unmatched(cutoff + US), unmatched(NOW)]

    counts = delete_unmatched_older_than(10, now=NOW, batch_size=2)

    assert (counts.rows, counts.bytes) == (2, 200)
    assert set(UnmatchedMessage.objects.values_list("pk", flat=True)) == {u.pk for u in kept}
    assert BounceEvent.objects.filter(pk=old_event.pk).exists()


@pytest.mark.django_db
def test_stripping_empties_old_raw_messages_and_keeps_the_rows_their_size_and_fingerprint():
    owner = tracker()
    cutoff = NOW - timedelta(days=3)
    old = [event(owner, cutoff - timedelta(hours=hours), b"z" * 300) for hours in (1, 50, 900)]
    at_cutoff = event(owner, cutoff, b"z" * 300)
    old_unmatched = unmatched(cutoff - timedelta(days=1))

    counts = strip_raw_older_than(3, now=NOW, batch_size=2)

    assert (counts.rows, counts.bytes) == (3, 900)
    for before in old:
        after = BounceEvent.objects.get(pk=before.pk)
        assert bytes(after.raw_message) == b""
        assert after.raw_truncated is True
        assert after.raw_size == 300
        assert (after.fingerprint, after.kind) == (before.fingerprint, before.kind)
    assert bytes(BounceEvent.objects.get(pk=at_cutoff.pk).raw_message) == b"z" * 300
    assert bytes(UnmatchedMessage.objects.get(pk=old_unmatched.pk).raw_message) == b"y" * 100
    # Stripped rows are not stripped (or counted) again.
    assert strip_raw_older_than(3, now=NOW).rows == 0


@pytest.mark.django_db
def test_the_byte_cap_strips_the_oldest_raw_messages_of_events_and_unmatched_mail_first():
    owner = tracker()
    start = NOW - timedelta(days=100)
    rows: list[BounceEvent | UnmatchedMessage] = []
    for day in range(10):  # alternating: event, unmatched, event… 100 bytes each
        moment = start + timedelta(days=day)
        rows.append(event(owner, moment) if day % 2 == 0 else unmatched(moment))
    assert retention.stored_raw_bytes() == 1000

    counts, before, after = cap_raw_bytes(parse_size("350"), batch_size=3)

    assert (counts.rows, counts.bytes, before, after) == (7, 700, 1000, 300)
    assert retention.stored_raw_bytes() == 300
    for index, row in enumerate(rows):
        row.refresh_from_db()
        stripped = index < 7
        assert (bytes(row.raw_message) == b"") is stripped, index
        assert row.raw_truncated is stripped
        assert row.raw_size == 100
    # Under the cap: nothing to do.
    assert cap_raw_bytes(300)[0].rows == 0
    assert cap_raw_bytes(10**9)[0].rows == 0


@pytest.mark.django_db
def test_the_byte_cap_stops_at_the_first_message_that_brings_it_under():
    owner = tracker()
    event(owner, NOW - timedelta(days=3), b"a" * 1000)
    event(owner, NOW - timedelta(days=2), b"b" * 10)
    unmatched(NOW - timedelta(days=1), b"c" * 10)

    counts, before, after = cap_raw_bytes(500)

    assert (counts.rows, before, after) == (1, 1020, 20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        ("500M", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("2g", 2 * 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        ("64KiB", 64 * 1024),
        ("10 MB", 10 * 1024**2),
        ("1T", 1024**4),
    ],
)
def test_sizes_take_binary_suffixes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "lots", "5X", "M", "1.2.3G"])
def test_sizes_that_are_not_sizes_are_refused(text):
    with pytest.raises(RetentionError):
        parse_size(text)


@pytest.mark.django_db
def test_a_dry_run_counts_everything_and_changes_nothing():
    owner = tracker()
    for days in (400, 60, 20, 1):
        event(owner, NOW - timedelta(days=days))
        unmatched(NOW - timedelta(days=days))
    snapshot = [
        sorted(model.objects.values_list("pk", "raw_message", "raw_truncated"))
        for model in (BounceEvent, UnmatchedMessage)
    ]

    report = prune(
        older_than=30,
        unmatched_older_than=10,
        strip_raw_older_than_days=0,
        max_raw_bytes=150,
        dry_run=True,
        now=NOW,
        batch_size=1,
    )

    assert report.dry_run
    assert report.events_deleted is not None
    assert report.events_deleted.rows == 2
    assert report.unmatched_deleted is not None
    assert report.unmatched_deleted.rows == 3
    assert report.raw_stripped is not None
    assert report.raw_stripped.rows == 4
    assert report.raw_capped is not None
    assert report.raw_capped.rows == 7
    assert (report.raw_bytes_before_cap, report.raw_bytes_after_cap) == (800, 100)
    after = [
        sorted(model.objects.values_list("pk", "raw_message", "raw_truncated"))
        for model in (BounceEvent, UnmatchedMessage)
    ]
    assert after == snapshot


@pytest.mark.django_db
def test_all_actions_together_delete_first_then_strip_then_cap():
    owner = tracker()
    for days in (400, 60, 20, 5, 1):
        event(owner, NOW - timedelta(days=days))
        unmatched(NOW - timedelta(days=days))

    report = prune(
        older_than=30,
        unmatched_older_than=10,
        strip_raw_older_than_days=15,
        max_raw_bytes=250,
        now=NOW,
    )

    assert report.events_deleted.rows == 2  # 400 and 60 days
    assert report.unmatched_deleted.rows == 3  # 400, 60 and 20 days
    assert report.raw_stripped.rows == 1  # the event of 20 days
    # Left with raw: events of 5 and 1 days, unmatched of 5 and 1 days (400 bytes).
    assert (report.raw_bytes_before_cap, report.raw_capped.rows) == (400, 2)
    assert retention.stored_raw_bytes() == 200
    assert report.bytes_freed == 200 + 300 + 100 + 200


# --- safety rules ---------------------------------------------------------------------


@pytest.mark.django_db
def test_tracker_counters_and_suppression_are_never_changed_by_pruning():
    owner = tracker()
    for status in ("5.1.1", "4.2.2", "4.2.2"):
        assert receive(messages.dsn(status=status)) == Outcome.RECORDED
    BounceEvent.objects.update(received_at=NOW - timedelta(days=365))
    fields = [f.name for f in EmailAddressTracker._meta.fields]
    before = EmailAddressTracker.objects.values(*fields).get(pk=owner.pk)
    assert before["bounce_count"] == 3
    assert before["suppressed_reason"] == "hard"

    report = prune(
        older_than=30, strip_raw_older_than_days=0, max_raw_bytes=0, now=NOW, batch_size=1
    )

    assert report.events_deleted.rows == 3
    assert BounceEvent.objects.count() == 0
    assert EmailAddressTracker.objects.values(*fields).get(pk=owner.pk) == before


@pytest.mark.django_db
def test_a_redelivery_of_a_pruned_message_counts_again_which_is_why_there_is_a_minimum():
    tracker()
    raw = messages.dsn(status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
    assert receive(raw) == Outcome.RECORDED
    assert receive(raw) == Outcome.DUPLICATE
    BounceEvent.objects.update(received_at=NOW - timedelta(days=MIN_RETENTION_DAYS + 1))

    delete_events_older_than(MIN_RETENTION_DAYS, now=NOW)

    assert receive(raw) == Outcome.RECORDED
    assert EmailAddressTracker.objects.get().bounce_count == 2


@pytest.mark.django_db
@pytest.mark.parametrize("option", ["--older-than", "--unmatched-older-than"])
def test_deleting_younger_than_the_minimum_is_refused_unless_allowed(option):
    owner = tracker()
    event(owner, NOW - timedelta(days=2))
    unmatched(NOW - timedelta(days=2))
    short = str(MIN_RETENTION_DAYS - 1)

    with pytest.raises(CommandError, match=f"minimum of {MIN_RETENTION_DAYS} days"):
        run(option, short)
    with pytest.raises(CommandError, match="minimum"):
        run(option, "1", "--dry-run")
    assert (BounceEvent.objects.count(), UnmatchedMessage.objects.count()) == (1, 1)

    run(option, "1", "--allow-short-retention")
    assert BounceEvent.objects.count() + UnmatchedMessage.objects.count() == 1
    run(option, str(MIN_RETENTION_DAYS))  # the minimum itself is allowed


@pytest.mark.django_db
def test_nothing_is_deleted_when_any_argument_is_refused():
    owner = tracker()
    event(owner, NOW - timedelta(days=400))
    with pytest.raises(CommandError, match="minimum"):
        run("--older-than", "30", "--unmatched-older-than", "3")
    with pytest.raises(RetentionError, match="batch size"):
        prune(older_than=30, batch_size=0)
    assert BounceEvent.objects.count() == 1


def test_stripping_needs_no_minimum_and_functions_check_their_days():
    with pytest.raises(RetentionError, match="minimum"):
        delete_events_older_than(MIN_RETENTION_DAYS - 1)
    with pytest.raises(RetentionError, match="0 or more"):
        strip_raw_older_than(-1)
    with pytest.raises(RetentionError, match="0 or more"):
        cap_raw_bytes(-1)


# --- the command ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--dry-run"],
        ["--batch-size", "10"],
        ["--older-than", "ten"],
        ["--older-than", "-3"],
        ["--max-raw-bytes", "lots"],
        ["--older-than", "30", "--batch-size", "0"],
    ],
)
def test_bad_arguments_are_command_errors(args):
    with pytest.raises(CommandError):
        run(*args)


@pytest.mark.django_db
def test_the_command_prints_a_summary_on_stdout_and_nothing_on_stderr_without_a_terminal():
    owner = tracker()
    for days in (400, 200, 1):
        event(owner, timezone.now() - timedelta(days=days), b"r" * 2048)
    unmatched(timezone.now() - timedelta(days=90))

    stdout, stderr = run(
        "--older-than",
        "180",
        "--unmatched-older-than",
        "30",
        "--strip-raw-older-than",
        "0",
        "--max-raw-bytes",
        "1K",
    )

    assert stderr == ""
    lines = stdout.splitlines()
    assert lines[0].startswith("Bounce events deleted: 2 (received before ")
    assert "4.0 KiB of raw messages" in lines[0]
    assert lines[1].startswith("Unmatched messages deleted: 1 ")
    assert lines[2].startswith("Raw messages of bounce events stripped: 1 ")
    assert lines[3].startswith("Raw messages stripped for --max-raw-bytes 1.0 KiB: 0 ")
    assert lines[4].startswith("Freed 6.1 KiB of raw messages in ")
    assert BounceEvent.objects.count() == 1
    assert UnmatchedMessage.objects.count() == 0


@pytest.mark.django_db
def test_the_command_dry_run_says_so_and_changes_nothing():
    owner = tracker()
    event(owner, timezone.now() - timedelta(days=400))

    stdout, _ = run("--older-than", "30", "--dry-run")

    assert "Bounce events would be deleted: 1 " in stdout
    assert "Dry run, nothing changed: would free 100 bytes" in stdout
    assert BounceEvent.objects.count() == 1


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
def test_the_command_shows_progress_on_stderr_when_it_is_a_terminal():
    owner = tracker()
    for days in range(40, 45):
        event(owner, timezone.now() - timedelta(days=days))
    stdout, stderr = io.StringIO(), FakeTerminal()

    call_command(
        "prune_bounce_events",
        "--older-than",
        "30",
        "--batch-size",
        "2",
        stdout=stdout,
        stderr=stderr,
    )

    progress = stderr.getvalue()
    # A tqdm bar, redrawn in place, left on the screen with its last count.
    assert progress.startswith("\rbounce events deleted: 0 rows [")
    assert re.search(r"\rbounce events deleted: 5 rows \[.*, 500 bytes freed\]\n$", progress)
    assert "\r" not in stdout.getvalue()
    assert stdout.getvalue().startswith("Bounce events deleted: 5 ")


@pytest.mark.django_db
def test_a_run_that_changes_nothing_prints_nothing_unless_asked_for():
    owner = tracker()
    event(owner, timezone.now() - timedelta(days=1))  # younger than any cutoff below
    args = ("--older-than", "30", "--unmatched-older-than", "30", "--strip-raw-older-than", "7")

    # Cron mails what a job prints: a routine run with nothing to do says nothing.
    assert run(*args) == ("", "")
    assert run(*args, "--dry-run") == ("", "")
    assert run(*args, "--max-raw-bytes", "1M") == ("", "")
    assert run(*args, "--verbosity", "0") == ("", "")
    stdout, _ = run(*args, "--verbosity", "2")
    assert stdout.splitlines()[0].startswith("Bounce events deleted: 0 (received before ")
    assert stdout.splitlines()[-1].startswith("Freed 0 bytes of raw messages in ")
    # Something to do: the summary, at the default verbosity, not at 0.
    event(owner, timezone.now() - timedelta(days=10))
    stdout, _ = run(*args)
    assert stdout.splitlines()[0].startswith("Bounce events deleted: 0 ")
    assert stdout.splitlines()[2].startswith("Raw messages of bounce events stripped: 1 ")
    quiet = event(owner, timezone.now() - timedelta(days=10))
    assert run(*args, "--verbosity", "0") == ("", "")
    quiet.refresh_from_db()
    assert quiet.raw_truncated is True
    assert BounceEvent.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "option", "argument"),
    [
        ({"older_than": 3}, "--older-than", "older_than"),
        ({"unmatched_older_than": -1}, "--unmatched-older-than", "unmatched_older_than"),
        ({"strip_raw_older_than_days": -1}, "--strip-raw-older-than", "strip_raw_older_than_days"),
        ({"max_raw_bytes": -1}, "--max-raw-bytes", "max_raw_bytes"),
        ({"older_than": 30, "batch_size": 0}, "--batch-size", "batch_size"),
    ],
)
def test_library_errors_name_the_argument_and_the_command_names_its_option(
    arguments, option, argument
):
    with pytest.raises(RetentionError) as raised:
        prune(**arguments)
    assert raised.value.argument == argument
    assert "--" not in str(raised.value)
    # The command words the same error with its option (argparse refuses most of
    # these values before the library sees them, so the library is made to raise).
    with (
        mock.patch.object(prune_command, "prune", side_effect=raised.value),
        pytest.raises(CommandError, match=f"^{option}: {re.escape(str(raised.value))}"),
    ):
        run("--older-than", "30")


def test_a_short_retention_error_tells_the_command_user_how_to_allow_it():
    with pytest.raises(RetentionError) as raised:
        delete_unmatched_older_than(1)
    assert "allow-short-retention" not in str(raised.value)
    with pytest.raises(CommandError, match="--allow-short-retention to do it anyway") as error:
        run("--unmatched-older-than", "1")
    assert str(error.value).startswith("--unmatched-older-than: ")


@pytest.mark.django_db
def test_a_database_error_is_a_command_error():
    with (
        mock.patch.object(retention, "_walk", side_effect=DatabaseError("gone away")),
        pytest.raises(CommandError, match="Database error: gone away"),
    ):
        run("--older-than", "30")


# --- under concurrent handlers, on a database server -----------------------------------


def _old_events(owners: list[EmailAddressTracker], count: int, raw: bytes) -> None:
    moment = timezone.now() - timedelta(days=400)
    BounceEvent.objects.bulk_create(
        (
            BounceEvent(tracker=owners[index % len(owners)], kind="soft", **_received(moment, raw))
            for index in range(count)
        ),
        batch_size=1000,
    )


@server_only
@pytest.mark.django_db(transaction=True)
def test_pruning_while_handlers_record_new_bounces_loses_nothing_new_and_removes_all_old():
    owners = [tracker(f"bounces+t{index}") for index in range(4)]
    _old_events(owners, 4000, b"o" * 1024)
    done = threading.Event()
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []
    outcomes: list[Outcome] = []
    waits: list[float] = []
    report: list[retention.Counts] = []

    def handler(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            sent = 0
            while not done.is_set() or sent < 10:
                raw = messages.dsn(status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
                started = time.perf_counter()
                outcomes.append(receive(raw, owners[index].encoded_from))
                waits.append(time.perf_counter() - started)
                sent += 1
        except BaseException as exc:  # collected and reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def pruner() -> None:
        try:
            barrier.wait(timeout=10)
            report.append(delete_events_older_than(30, batch_size=50))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()
            connection.close()

    threads = [threading.Thread(target=handler, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=pruner))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a handler or the pruner did not finish in 120 s"

    assert errors == []
    assert report[0].rows == 4000
    assert set(outcomes) == {Outcome.RECORDED}
    assert len(outcomes) >= 40
    assert max(waits) < 5, "a handler waited long for the prune's locks"
    old = timezone.now() - timedelta(days=30)
    assert not BounceEvent.objects.filter(received_at__lt=old).exists()
    assert BounceEvent.objects.count() == len(outcomes)
    assert sum(EmailAddressTracker.objects.values_list("bounce_count", flat=True)) == len(outcomes)


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_rows_deleted_per_second_on_mariadb(capsys):
    rows, raw = 50_000, b"m" * 2048  # a typical DSN with the original headers
    owners = [tracker(f"bounces+p{index}") for index in range(50)]
    _old_events(owners, rows, raw)
    event(owners[0], timezone.now())

    started = time.perf_counter()
    counts = delete_events_older_than(30)
    seconds = time.perf_counter() - started

    assert counts.rows == rows
    assert BounceEvent.objects.count() == 1
    with capsys.disabled():
        print(
            f"\nprune_bounce_events on MariaDB: {rows:,} events of {len(raw)} bytes, batch "
            f"{retention.DEFAULT_BATCH_SIZE}: {seconds:.2f} s, {rows / seconds:,.0f} rows/s"
        )
