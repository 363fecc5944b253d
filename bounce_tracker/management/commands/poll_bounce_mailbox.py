"""``manage.py poll_bounce_mailbox [--url URL] [--loop [--interval SECONDS]]``.

Reads the bounce mailbox (``BOUNCE_TRACKER['MAILBOX_URL']`` or ``--url``) over IMAP
or POP3 and records every message for ``BOUNCE_DOMAIN`` the way ``handle_bounce``
does; see :mod:`bounce_tracker.receiving.mailbox` for what is removed and what is left alone.

Once (the default, for cron): one pass, then a one-line summary on stdout (none with
``-v 0``). Exit 0 when the pass completed; 75 (EX_TEMPFAIL) when it stopped early
because the database or the mailbox was unavailable (the rest waits for the next
run); 1 when it completed but some messages could not be recorded (they stay in the
mailbox; the log says why) or the configuration is wrong.

``--loop``: a pass every ``--interval`` seconds until SIGTERM or SIGINT, which stop
it between two messages (exit 0). A pass that fails is logged and the next one
tries again.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

logger = logging.getLogger("bounce_tracker")

EX_TEMPFAIL = 75


class StopFlag:
    """Set by SIGTERM/SIGINT. A plain attribute: a handler that took a lock (as
    ``threading.Event.set`` does) could deadlock against the code it interrupted."""

    def __init__(self) -> None:
        self.stopped = False

    def set(self, signum: int = 0, frame: object = None) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the flag is set meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


class Command(BaseCommand):
    help = (
        "Record the bounces waiting in the bounce mailbox (IMAP or POP3, "
        "BOUNCE_TRACKER['MAILBOX_URL']), then remove or move them; other mail is left alone."
    )
    # Not every app's system checks: a bad key of another room (BACKEND, say) must not
    # stop the poller. It validates the keys it reads itself, with the same check IDs.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            help="the mailbox to read instead of BOUNCE_TRACKER['MAILBOX_URL'] (same form: "
            "imap[s]://USER:PASSWORD@HOST[:PORT][/FOLDER], imap+starttls://, pop3[s]://, "
            "pop3+starttls://)",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="keep polling every --interval seconds until SIGTERM or SIGINT",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=60.0,
            help="seconds between two passes with --loop (default: %(default)s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from bounce_tracker.receiving.mailbox import (
            MailboxPoller,
            parse_mailbox_url,
            processed_folder_problem,
        )
        from bounce_tracker.receiving.settings import get_mailbox_settings

        tracker_settings = get_mailbox_settings()
        url_text = options["url"] or tracker_settings.mailbox_url
        if not url_text:
            raise CommandError("No mailbox: set BOUNCE_TRACKER['MAILBOX_URL'] or pass --url.")
        try:
            url = parse_mailbox_url(url_text)
        except ValueError as exc:
            where = "--url" if options["url"] else "BOUNCE_TRACKER['MAILBOX_URL']"
            raise CommandError(f"{where} is not a usable mailbox URL: {exc}") from None
        folder = tracker_settings.mailbox_processed_folder
        problem = processed_folder_problem(folder, url)
        if problem:
            raise CommandError(f"BOUNCE_TRACKER['MAILBOX_PROCESSED_FOLDER'] {problem}")
        interval = options["interval"]
        if not 0.1 <= interval <= 86400:
            raise CommandError("--interval must be from 0.1 to 86400 seconds.")
        saved = (logger.level, logger.propagate)
        handler = self._configure_logging(options["verbosity"])

        stop = StopFlag()
        previous = {
            signum: signal.signal(signum, stop.set) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        poller = MailboxPoller(
            url, tracker_settings, processed_folder=folder, should_stop=stop.is_set
        )
        try:
            if options["loop"]:
                self._loop(poller, interval, stop, options["verbosity"])
            else:
                self._once(poller, options["verbosity"])
        finally:
            for signum, previous_handler in previous.items():
                signal.signal(signum, previous_handler)
            if handler is not None:
                logger.removeHandler(handler)
                logger.setLevel(saved[0])
                logger.propagate = saved[1]

    def _once(self, poller: Any, verbosity: int) -> None:
        from bounce_tracker.receiving.mailbox import PollFailedError

        try:
            summary = poller.run()
        except PollFailedError as exc:
            self._report(poller.summary, verbosity)
            raise CommandError(
                f"{exc}; the rest stays in the mailbox for the next run.", returncode=EX_TEMPFAIL
            ) from None
        finally:
            self._close_connections()
        self._report(summary, verbosity)
        if summary.errors:
            raise CommandError(
                f"{summary.errors} message(s) could not be recorded and stay in the mailbox; "
                "the log says why."
            )

    def _loop(self, poller: Any, interval: float, stop: StopFlag, verbosity: int) -> None:
        from django.db import close_old_connections

        from bounce_tracker.receiving.mailbox import PollFailedError

        logger.info("poll_bounce_mailbox: polling %s every %g s", poller.url.redacted(), interval)
        while not stop.is_set():
            close_old_connections()
            try:
                summary = poller.run()
            except PollFailedError as exc:
                logger.error("poll_bounce_mailbox: %s; trying again in %g s", exc, interval)
                self._close_connections()  # a broken connection must not be reused
                summary = poller.summary
            if summary.processed or summary.errors or verbosity >= 2:
                self._report(summary, verbosity)
            stop.sleep(interval)
        self._close_connections()
        logger.info("poll_bounce_mailbox: stopped")

    def _report(self, summary: Any, verbosity: int) -> None:
        if verbosity >= 1:
            self.stdout.write(f"poll_bounce_mailbox: {summary.line()}")
            self.stdout.flush()

    def _configure_logging(self, verbosity: int) -> logging.Handler | None:
        """Warnings and errors on stderr; one line per message too with -v 2; unless the
        project configures the ``bounce_tracker`` logger itself. Returns the handler added."""
        if logger.handlers:
            return None
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if verbosity >= 2 else logging.WARNING)
        logger.propagate = False
        return handler

    def _close_connections(self) -> None:
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            try:
                connection.close()
            except Exception:  # closing a broken connection can fail; it is gone anyway
                logger.debug("closing %s failed", connection.alias, exc_info=True)
