"""``manage.py handle_bounce [--] SENDER RECIPIENT``: the Postfix pipe target.

Reads the message on stdin and records it. Exit status is the whole interface with
Postfix (pipe(8)): 0 when the message was recorded, was a duplicate or was stored
as unmatched; 75 (EX_TEMPFAIL) when it could not be recorded now, so Postfix keeps
it and delivers it again later. Never anything else: any other status turns the
bounce into a double bounce that Postfix discards. Quiet on success; on 75, one line
on stderr saying why (Postfix logs it).
"""

from __future__ import annotations

import sys
from argparse import Namespace
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    handle_default_options,
)

EX_OK = 0
EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = (
        "Record a message piped from Postfix for a VERP bounce address. "
        "Exits 0 when recorded or stored, 75 when Postfix should retry."
    )
    # Postfix starts one process per bounce: no system checks, no migration checks.
    requires_system_checks: tuple[str, ...] = ()
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "sender", help="Postfix's ${sender}: empty or MAILER-DAEMON for bounces"
        )
        parser.add_argument("recipient", help="Postfix's ${recipient}: the VERP bounce address")

    def run_from_argv(self, argv: list[str]) -> None:
        """Like BaseCommand.run_from_argv, but every failure becomes exit 75."""
        sys.exit(self._run(argv))

    def _run(self, argv: list[str]) -> int:
        try:
            options = self._parse_arguments(argv)
            handle_default_options(options)
            self.execute(**vars(options))
            return EX_OK
        except SystemExit as exc:  # --help and --version exit 0 through argparse
            if exc.code in (0, None):
                return EX_OK
            self._report_tempfail(exc)
            return EX_TEMPFAIL
        except BaseException as exc:  # Postfix must only ever see 0 or 75
            self._report_tempfail(exc)
            return EX_TEMPFAIL
        finally:
            self._close_connections()

    def _parse_arguments(self, argv: list[str]) -> Namespace:
        """The options, with SENDER and RECIPIENT taken verbatim after ``--``.

        The envelope comes from whoever sent the mail. After ``--`` (as the rendered
        pipe passes it) the two values are used as they are: Python 3.11's argparse
        turns a positional ``--`` into an empty list, which would fail the message on
        every retry.
        """
        parser = self.create_parser(argv[0], argv[1])
        args = argv[2:]
        if "--" not in args:
            return parser.parse_args(args)
        split = args.index("--")
        envelope = args[split + 1 :]
        if len(envelope) != 2:
            raise CommandError(f"expected SENDER RECIPIENT after --, got {len(envelope)} values")
        options = parser.parse_args([*args[:split], "--", "sender", "recipient"])
        options.sender, options.recipient = envelope
        return options

    def handle(self, *args: Any, **options: Any) -> None:
        from bounce_tracker.receiving.receive import read_message, receive_message
        from bounce_tracker.receiving.settings import get_receiving_settings

        tracker_settings = get_receiving_settings()
        message = read_message(sys.stdin.buffer, tracker_settings.max_message_bytes)
        receive_message(
            message, options["sender"], options["recipient"], tracker_settings=tracker_settings
        )

    def _report_tempfail(self, exc: BaseException) -> None:
        self._drain_stdin()
        reason = str(exc).replace("\n", " ").strip()[:300]
        if isinstance(exc, CommandError):
            what = f"bad arguments: {reason}"
        else:
            what = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        try:
            sys.stderr.write(f"bounce not recorded, Postfix will retry: {what}\n")
            sys.stderr.flush()
        except Exception:  # stderr itself may be gone; the status still counts
            pass

    def _drain_stdin(self) -> None:
        # Postfix is still writing the message; read it to the end so the exit
        # status, not a broken pipe, decides what happens to it.
        try:
            while sys.stdin.buffer.read(64 * 1024):
                pass
        except Exception:  # nothing left to read, or no stdin at all
            pass

    def _close_connections(self) -> None:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # closing can't change the outcome anymore
            pass
