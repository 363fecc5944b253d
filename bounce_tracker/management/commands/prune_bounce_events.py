"""``manage.py prune_bounce_events``: delete old history and strip stored raw messages.

A thin shell around :mod:`bounce_tracker.ops.retention`, meant for cron: safe while
bounces arrive (short batches, each its own transaction), a summary on stdout when
it deleted or stripped something (always with ``--verbosity 2``, never with 0, so
cron mails only runs that did something), progress bars on stderr only when it is a
terminal. Exits non-zero only for bad arguments or a database error. Tracker rows
and their counters are never changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from bounce_tracker.management.progress import ProgressBars
from bounce_tracker.ops.retention import (
    DEFAULT_BATCH_SIZE,
    MIN_RETENTION_DAYS,
    Counts,
    PruneReport,
    RetentionError,
    ShortRetentionError,
    cutoff_for,
    parse_size,
    prune,
)

#: The option that sets each argument of prune(), for error messages.
_OPTIONS = {
    "older_than": "--older-than",
    "unmatched_older_than": "--unmatched-older-than",
    "strip_raw_older_than_days": "--strip-raw-older-than",
    "max_raw_bytes": "--max-raw-bytes",
    "batch_size": "--batch-size",
}


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: days must be 0 or more")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except RetentionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the batch size must be at least 1")
    return value


#: The options that each ask for one action.
_ACTIONS = ("older_than", "unmatched_older_than", "strip_raw_older_than", "max_raw_bytes")


def _command_error(exc: RetentionError) -> CommandError:
    """The library's error, worded with this command's options."""
    option = _OPTIONS.get(exc.argument or "")
    message = f"{option}: {exc}" if option else str(exc)
    if isinstance(exc, ShortRetentionError):
        message += " Pass --allow-short-retention to do it anyway."
    return CommandError(message)


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class Command(BaseCommand):
    help = (
        "Delete bounce events and unmatched mail older than a number of days, and strip "
        "stored raw messages, in short batches (safe while bounces arrive). Tracker rows "
        "and their counters are never changed."
    )
    # Not every app's system checks: a bad key of another room (BACKEND, MAILBOX_URL…)
    # must not stop pruning. The keys it reads are validated when it reads them.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=_days,
            metavar="DAYS",
            help=f"delete bounce events received more than DAYS days ago "
            f"(at least {MIN_RETENTION_DAYS})",
        )
        parser.add_argument(
            "--unmatched-older-than",
            type=_days,
            metavar="DAYS",
            help=f"delete unmatched messages received more than DAYS days ago "
            f"(at least {MIN_RETENTION_DAYS})",
        )
        parser.add_argument(
            "--strip-raw-older-than",
            type=_days,
            metavar="DAYS",
            help="empty the stored raw message of bounce events received more than DAYS "
            "days ago (the event itself is kept)",
        )
        parser.add_argument(
            "--max-raw-bytes",
            type=_size,
            metavar="SIZE",
            help="strip raw messages, oldest first, until those of bounce events and "
            "unmatched mail together take at most SIZE bytes (e.g. 500M, 2G)",
        )
        parser.add_argument(
            "--batch-size",
            type=_batch_size,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help="rows per batch, each batch its own transaction (default: %(default)s)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="count what would be deleted or stripped; change nothing",
        )
        parser.add_argument(
            "--allow-short-retention",
            action="store_true",
            help=f"allow deleting rows younger than {MIN_RETENTION_DAYS} days (a late "
            "redelivery of a deleted message then counts again)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if all(options[name] is None for name in _ACTIONS):
            raise CommandError(
                "Nothing to do: give --older-than, --unmatched-older-than, "
                "--strip-raw-older-than or --max-raw-bytes."
            )
        try:
            with ProgressBars(self.stderr) as bars:

                def progress(label: str, counts: Counts) -> None:
                    bars.show(label, counts.rows, note=f"{_bytes(counts.bytes)} freed")

                report = prune(
                    older_than=options["older_than"],
                    unmatched_older_than=options["unmatched_older_than"],
                    strip_raw_older_than_days=options["strip_raw_older_than"],
                    max_raw_bytes=options["max_raw_bytes"],
                    batch_size=options["batch_size"],
                    dry_run=options["dry_run"],
                    allow_short_retention=options["allow_short_retention"],
                    progress=progress,
                )
        except RetentionError as exc:
            raise _command_error(exc) from None
        except DatabaseError as exc:
            raise CommandError(
                f"Database error: {exc}. Batches before it are committed; run it again."
            ) from exc
        # Cron mails whatever a job prints: a run that changed nothing stays quiet.
        if options["verbosity"] >= 2 or (options["verbosity"] == 1 and report.rows_changed):
            for line in self._summary(report, options):
                self.stdout.write(line)

    def _summary(self, report: PruneReport, options: dict[str, Any]) -> list[str]:
        would = "would be " if report.dry_run else ""
        lines = []
        for counts, what, verb, days in (
            (report.events_deleted, "Bounce events", "deleted", options["older_than"]),
            (
                report.unmatched_deleted,
                "Unmatched messages",
                "deleted",
                options["unmatched_older_than"],
            ),
            (
                report.raw_stripped,
                "Raw messages of bounce events",
                "stripped",
                options["strip_raw_older_than"],
            ),
        ):
            if counts is None:
                continue
            cutoff = cutoff_for(days, report.now).isoformat(sep=" ", timespec="seconds")
            lines.append(
                f"{what} {would}{verb}: {counts.rows:,} (received before {cutoff}; "
                f"{_bytes(counts.bytes)} of raw messages)"
            )
        if report.raw_capped is not None:
            lines.append(
                f"Raw messages {would}stripped for --max-raw-bytes "
                f"{_bytes(options['max_raw_bytes'])}: {report.raw_capped.rows:,} "
                f"(stored raw messages {_bytes(report.raw_bytes_before_cap or 0)} -> "
                f"{_bytes(report.raw_bytes_after_cap or 0)})"
            )
        lines.append(
            ("Dry run, nothing changed: would free " if report.dry_run else "Freed ")
            + f"{_bytes(report.bytes_freed)} of raw messages in {report.seconds:.2f} s."
        )
        return lines
