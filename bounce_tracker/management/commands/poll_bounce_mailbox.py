"""``manage.py poll_bounce_mailbox [--url URL] [--loop [--interval SECONDS]]``.

Reads the bounce mailbox (``BOUNCE_TRACKER['MAILBOX_URL']`` or ``--url``) over IMAP
or POP3 and records every message for ``BOUNCE_DOMAIN`` the way ``handle_bounce``
does; see :mod:`bounce_tracker.receiving.mailbox` for what is removed and what is left alone.

Once (the default, for cron): one pass, then a one-line summary on stdout when the
pass received anything (recorded, duplicates, unmatched) or failed with a message,
so that cron mails only what matters; always with ``-v 2``, never with ``-v 0``.
Exit 0 when the pass completed; 75 (EX_TEMPFAIL) when it stopped early because the
database or the mailbox was unavailable (the rest waits for the next run); 1 when it
completed but some messages could not be recorded (they stay in the mailbox; the log
says why) or the configuration is wrong.

``--loop``: a pass every ``--interval`` seconds until SIGTERM or SIGINT, which stop
it between two messages (exit 0). A pass that fails is logged and the next one
tries again.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bounce_tracker.receiving.reporting import command_logging

if TYPE_CHECKING:
    from bounce_tracker.receiving.mailbox import MailboxPoller, PollSummary

EX_TEMPFAIL = 75


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
        from bounce_tracker.receiving.mailbox.poller import StopFlag, poll_until_stopped
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
        self.verbosity = options["verbosity"]

        stop = StopFlag()
        previous = {
            signum: signal.signal(signum, stop.set) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        poller = MailboxPoller(
            url, tracker_settings, processed_folder=folder, should_stop=stop.is_set
        )
        try:
            with command_logging(self.verbosity, info_from=2):
                if options["loop"]:
                    poll_until_stopped(poller, interval, stop, self._report)
                else:
                    self._once(poller)
        finally:
            for signum, previous_handler in previous.items():
                signal.signal(signum, previous_handler)

    def _once(self, poller: MailboxPoller) -> None:
        from bounce_tracker.receiving.mailbox import PollFailedError
        from bounce_tracker.receiving.mailbox.poller import close_connections

        try:
            summary = poller.run()
        except PollFailedError as exc:
            self._report(poller.summary)
            raise CommandError(
                f"{exc}; the rest stays in the mailbox for the next run.", returncode=EX_TEMPFAIL
            ) from None
        finally:
            close_connections()
        self._report(summary)
        if summary.errors:
            raise CommandError(
                f"{summary.errors} message(s) could not be recorded and stay in the mailbox; "
                "the log says why."
            )

    def _report(self, summary: PollSummary) -> None:
        """The summary line on stdout, when the pass received anything or with -v 2."""
        if self.verbosity >= 2 or (self.verbosity >= 1 and (summary.processed or summary.errors)):
            self.stdout.write(f"poll_bounce_mailbox: {summary.line()}")
            self.stdout.flush()
