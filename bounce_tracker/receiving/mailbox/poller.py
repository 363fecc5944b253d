"""One run over the bounce mailbox: :class:`MailboxPoller` and its :class:`PollSummary`.

The poller owns what IMAP and POP3 share: deciding which message is for which
address (:mod:`~bounce_tracker.receiving.mailbox.headers`), receiving each through
:func:`bounce_tracker.receiving.receive.receive_message` with
``source=EventSource.MAILBOX``, counting, and turning errors into
:class:`PollFailedError`. The protocol readers
(:class:`~bounce_tracker.receiving.mailbox.imap.IMAPReader`,
:class:`~bounce_tracker.receiving.mailbox.pop3.POP3Reader`) walk the mailbox and
call back :meth:`MailboxPoller.address` and :meth:`MailboxPoller.receive`.
"""

from __future__ import annotations

import dataclasses
import imaplib
import logging
import poplib
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import DatabaseError, close_old_connections, connections

from bounce_tracker.core.events import Outcome
from bounce_tracker.models import EventSource
from bounce_tracker.receiving.mailbox.connection import MailboxError
from bounce_tracker.receiving.mailbox.headers import bounce_address
from bounce_tracker.receiving.mailbox.imap import IMAPReader
from bounce_tracker.receiving.mailbox.pop3 import POP3Reader
from bounce_tracker.receiving.mailbox.url import MailboxURL, processed_folder_problem
from bounce_tracker.receiving.receive import IncomingMessage, MessageBuilder, receive_message
from bounce_tracker.receiving.reporting import one_line
from bounce_tracker.receiving.settings import ReceivingSettings

logger = logging.getLogger("bounce_tracker")

#: Seconds a mailbox server may take to answer one command.
TIMEOUT = 60.0


class PollFailedError(Exception):
    """The run stopped early (database or mailbox unavailable); try again later."""


def incoming_message(raw: bytes, size: int) -> IncomingMessage:
    """The message as the other receive paths see it: LF line ends, ``size`` its full size.

    IMAP and POP3 hand out CRLF lines; Postfix's pipe and the LMTP receiver LF ones.
    Normalising keeps the content hash (and so the duplicate check of a message without
    a Message-ID) the same whichever way a copy arrived.
    """
    data = raw.replace(b"\r\n", b"\n")
    builder = MessageBuilder(len(data))
    builder.write(data)
    message = builder.finish()
    if size > len(raw):  # only the first MAX_MESSAGE_BYTES were fetched
        message = dataclasses.replace(message, size=size)
    return message


@dataclass
class PollSummary:
    """What one run did."""

    recorded: int = 0
    duplicates: int = 0
    unmatched: int = 0
    removed: int = 0
    unrelated: int = 0
    errors: int = 0
    seconds: float = 0.0
    moved_to: str | None = None

    @property
    def processed(self) -> int:
        """Messages the database holds now: recorded, duplicates and unmatched."""
        return self.recorded + self.duplicates + self.unmatched

    def add(self, other: PollSummary) -> None:
        """Add ``other``'s counts and time to these."""
        for name in ("recorded", "duplicates", "unmatched", "removed", "unrelated", "errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds

    def line(self) -> str:
        """The one-line summary ``poll_bounce_mailbox`` prints."""
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        removed = f"moved to {self.moved_to}" if self.moved_to else "removed"
        return (
            f"{self.recorded} recorded, {self.duplicates} duplicate(s), "
            f"{self.unmatched} unmatched, {self.removed} {removed}, "
            f"{self.unrelated} unrelated left alone, {self.errors} error(s) "
            f"in {self.seconds:.2f} s ({rate:.0f} messages/s)"
        )


class MailboxPoller:
    """Reads one mailbox once: :meth:`run` returns a :class:`PollSummary`.

    ``should_stop`` is asked between messages (a signal handler sets it); the
    messages recorded so far are still removed before :meth:`run` returns.
    """

    def __init__(
        self,
        url: MailboxURL,
        tracker_settings: ReceivingSettings,
        *,
        processed_folder: str | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        timeout: float = TIMEOUT,
    ) -> None:
        problem = processed_folder_problem(processed_folder, url)
        if problem:
            raise ValueError(f"MAILBOX_PROCESSED_FOLDER {problem}")
        self.url = url
        self.settings = tracker_settings
        self.processed_folder = processed_folder
        self.should_stop = should_stop
        self.timeout = timeout
        self.summary = PollSummary(moved_to=processed_folder)

    def run(self) -> PollSummary:
        """Poll once. Raises :class:`PollFailedError` when the run had to stop early."""
        started = time.perf_counter()
        self.summary = PollSummary(moved_to=self.processed_folder)
        reader = IMAPReader(self) if self.url.protocol == "imap" else POP3Reader(self)
        try:
            reader.run()
        except DatabaseError as exc:
            raise PollFailedError(f"database error, stopped: {one_line(exc, 300)}") from exc
        except (MailboxError, OSError, imaplib.IMAP4.error, poplib.error_proto) as exc:
            raise PollFailedError(f"mailbox {self.url.redacted()}: {one_line(exc, 300)}") from exc
        finally:
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    def receive(self, raw: bytes, size: int, recipient: str, sender: str, where: str) -> bool:
        """Record one message; True when the database has it now (so it may go)."""
        message = incoming_message(raw, size)
        try:
            result = receive_message(
                message,
                sender,
                recipient,
                source=EventSource.MAILBOX,
                tracker_settings=self.settings,
            )
        except DatabaseError:
            logger.error("mailbox %s to=<%s>: database error, stopping", where, recipient)
            raise
        except Exception:  # one bad message must not block the rest of the mailbox
            logger.exception(
                "mailbox %s to=<%s>: not recorded, left in the mailbox", where, recipient
            )
            self.summary.errors += 1
            return False
        if result.outcome == Outcome.RECORDED:
            self.summary.recorded += 1
        elif result.outcome == Outcome.DUPLICATE:
            self.summary.duplicates += 1
        else:
            self.summary.unmatched += 1
        logger.info(
            "mailbox %s to=<%s> size=%d%s %s kind=%s",
            where,
            recipient,
            message.size,
            " truncated" if message.truncated else "",
            result.outcome,
            result.kind,
        )
        return True

    def address(self, fields: list[tuple[str, str]], where: str) -> str | None:
        """The VERP address in ``fields``; None (counted as unrelated) when there is none."""
        address = bounce_address(fields, self.settings.bounce_domain)
        if address is None:
            self.summary.unrelated += 1
            logger.debug("mailbox %s: not for %s, left alone", where, self.settings.bounce_domain)
        return address


# --- Running again and again ------------------------------------------------------


class StopFlag:
    """Set by SIGTERM/SIGINT. A plain attribute: a handler that took a lock (as
    ``threading.Event.set`` does) could deadlock against the code it interrupted."""

    def __init__(self) -> None:
        self.stopped = False

    def set(self, signum: int = 0, frame: object = None) -> None:
        """Ask the poller to stop (usable as a signal handler)."""
        self.stopped = True

    def is_set(self) -> bool:
        """Whether stopping was asked for; the poller's ``should_stop``."""
        return self.stopped

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the flag is set meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


def poll_until_stopped(
    poller: MailboxPoller,
    interval: float,
    stop: StopFlag,
    report: Callable[[PollSummary], None],
) -> None:
    """Run ``poller`` every ``interval`` seconds until ``stop`` is set.

    A run that fails is logged (ERROR) and the next one tries again, with fresh
    database connections. ``report`` is given each run's summary.
    """
    logger.info("poll_bounce_mailbox: polling %s every %g s", poller.url.redacted(), interval)
    while not stop.is_set():
        close_old_connections()
        try:
            summary = poller.run()
        except PollFailedError as exc:
            logger.error("poll_bounce_mailbox: %s; trying again in %g s", exc, interval)
            close_connections()  # a broken connection must not be reused
            summary = poller.summary
        report(summary)
        stop.sleep(interval)
    close_connections()
    logger.info("poll_bounce_mailbox: stopped")


def close_connections() -> None:
    """Close this thread's database connections, also broken ones."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except Exception:  # closing a broken connection can fail; it is gone anyway
            logger.debug("closing %s failed", connection.alias, exc_info=True)
