"""``manage.py handle_bounce [--] SENDER RECIPIENT``: the Postfix pipe target.

Reads the message on stdin and records it. Exit status is the whole interface with
Postfix (pipe(8)): 0 when the message was recorded, was a duplicate or was stored
as unmatched; 75 (EX_TEMPFAIL) when it could not be recorded now, so Postfix keeps
it and delivers it again later. Never anything else: any other status turns the
bounce into a double bounce that Postfix discards. Quiet on success; on 75, one line
on stderr saying why (Postfix logs it).

``handle_bounce --probe [--expect-database LABEL]`` reads no message and records
nothing: it checks that this process could record one now (settings, database,
tables, write permission; :mod:`bounce_tracker.receiving.probe`), prints one line
and exits 0, or exits 75 with ``probe failed: STEP: reason``.
``bounce_postfix_config --check`` runs it the way Postfix runs the pipe.

Run as its process's own command (``manage.py handle_bounce …``), it ends with
``os._exit(status)`` once the message is recorded (or not), the database connections
are closed and the threads, ``atexit`` functions (logging's shutdown among them) and
standard streams are done: the interpreter's teardown of ~600 modules, a fifth of
the process's CPU time, decides nothing. Called in-process (``call_command``, or
``run_from_argv`` with other arguments than the process's own) it returns or raises
``SystemExit`` as any command does.
"""

from __future__ import annotations

import os
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
            "sender", nargs="?", help="Postfix's ${sender}: empty or MAILER-DAEMON for bounces"
        )
        parser.add_argument(
            "recipient", nargs="?", help="Postfix's ${recipient}: the VERP bounce address"
        )
        parser.add_argument(
            "--probe",
            action="store_true",
            help="read no message, record nothing: check that a bounce could be recorded now",
        )
        parser.add_argument(
            "--expect-database",
            metavar="LABEL",
            help="with --probe: fail unless the database is this one (as the probe names it)",
        )

    def run_from_argv(self, argv: list[str]) -> None:
        """Like BaseCommand.run_from_argv, but every failure becomes exit 75.

        In a process started for this command the status ends the process at once
        (:func:`_exit_now`); otherwise it is raised as ``SystemExit``.
        """
        status = EX_TEMPFAIL
        try:
            status = self._run(argv)
        finally:  # even if reporting itself failed: the status stays 0 or 75
            if _is_this_process(argv):
                _exit_now(status)
        sys.exit(status)

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
        if options["probe"]:
            from bounce_tracker.receiving.probe import probe_recording

            self.stdout.write(probe_recording(options["expect_database"]))
            return
        if options["sender"] is None or options["recipient"] is None:
            raise CommandError("expected SENDER RECIPIENT (or --probe)")
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
        # Looked up, not imported: reporting must not fail on an import of its own.
        probe = sys.modules.get("bounce_tracker.receiving.probe")
        if probe is not None and isinstance(exc, probe.ProbeFailedError):
            self._write_line(f"probe failed: {reason}")
            return
        if isinstance(exc, CommandError):
            what = f"bad arguments: {reason}"
        else:
            what = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        self._write_line(f"bounce not recorded, Postfix will retry: {what}")

    def _write_line(self, line: str) -> None:
        try:
            sys.stderr.write(f"{line}\n")
            sys.stderr.flush()
        except Exception:  # stderr itself may be gone; the status still counts
            pass

    def _drain_stdin(self) -> None:
        # Postfix is still writing the message; read it to the end so the exit
        # status, not a broken pipe, decides what happens to it. (Not from a terminal:
        # someone trying the command, or --probe, by hand.)
        try:
            if sys.stdin.isatty():
                return
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


def _is_this_process(argv: list[str]) -> bool:
    """Whether ``argv`` is this process's own command line (so the process may end).

    ``manage.py``, ``django-admin`` and ``python -m django`` pass ``sys.argv`` (its
    ``argv[0]`` may be spelled differently); a test calling ``run_from_argv`` passes
    its own list, and its process must go on.
    """
    return argv[1:] == sys.argv[1:]


def _exit_now(status: int) -> None:
    """End the process with ``status``, skipping only the interpreter's teardown.

    What a normal exit does that matters is done first, in its order: wait for
    non-daemon threads, run the ``atexit`` functions (logging's shutdown flushes and
    closes every handler; error reporters such as Sentry's flush there too), flush
    standard output and error. The connections are already closed (``_run``). What is
    skipped is freeing every module and object one by one, which nothing needs.
    """
    try:
        import threading

        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None and threading.current_thread() is threading.main_thread():
            shutdown()
    except BaseException:  # a thread's failure can't change the status anymore
        pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # _run_exitfuncs reports an atexit function's own error
        pass
    try:
        import logging

        logging.shutdown()  # again, in case an atexit function logged
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:  # a closed pipe: nothing more can be said anyway
            pass
    os._exit(status)
