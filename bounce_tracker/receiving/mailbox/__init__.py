"""Reading bounces from a mailbox over IMAP or POP3 (``manage.py poll_bounce_mailbox``).

For sites whose bounces land in a mailbox they can only read remotely, instead of
being piped or handed over LMTP by their own Postfix. Each message is fed through
:func:`bounce_tracker.receiving.receive.receive_message`, like ``handle_bounce`` does,
with ``source=EventSource.MAILBOX``:

- **Which address.** A mailbox message has no envelope, so the VERP address comes
  from its delivery headers (``Delivered-To``, ``X-Original-To``, … then ``To`` and
  ``Cc``); the sender is the ``Return-Path`` (empty for a DSN).
- **Unrelated mail** (no such address) is left exactly as it was: only its header
  fields are read, with ``BODY.PEEK`` (no ``\\Seen`` flag) or POP3 ``TOP``.
- **What is removed** (or, over IMAP, moved to ``MAILBOX_PROCESSED_FOLDER``): the
  messages the database now holds, that is those recorded, recognised as
  duplicates (recorded by an earlier run that stopped before removing them) and
  stored as unmatched mail (the same three outcomes for which ``handle_bounce``
  exits 0 and Postfix deletes its copy). Messages are removed only after they were
  committed, so a crash at any point loses nothing and counts nothing twice: the
  next run finds the leftovers again, sees duplicates and removes them.
- **Errors.** A database error stops the run (:class:`PollFailedError`) after
  removing what was already recorded; the failed message and the rest stay for the
  next run. Any other error with one message (a classifier bug, say) is logged and
  counted; the message stays and the run goes on with the next.

The package, by job:

- :mod:`~bounce_tracker.receiving.mailbox.url`: ``MAILBOX_URL`` and
  ``MAILBOX_PROCESSED_FOLDER`` parsed and checked (no Django, no network);
- :mod:`~bounce_tracker.receiving.mailbox.headers`: which message is for which
  address, from its header fields;
- :mod:`~bounce_tracker.receiving.mailbox.connection`: connecting, one piece for
  both protocols (TLS, STARTTLS and its failure);
- :mod:`~bounce_tracker.receiving.mailbox.imap` and
  :mod:`~bounce_tracker.receiving.mailbox.pop3`: walking the mailbox in each protocol;
- :mod:`~bounce_tracker.receiving.mailbox.poller`: one run, receiving and counting.

The names below are the public ones, importable from the package.
"""

from bounce_tracker.receiving.mailbox.connection import MailboxError
from bounce_tracker.receiving.mailbox.headers import bounce_address, header_fields, return_path
from bounce_tracker.receiving.mailbox.imap import imap_quote, imap_uid_set
from bounce_tracker.receiving.mailbox.poller import MailboxPoller, PollFailedError, PollSummary
from bounce_tracker.receiving.mailbox.url import (
    MailboxURL,
    parse_mailbox_url,
    processed_folder_problem,
)

__all__ = [
    "MailboxError",
    "MailboxPoller",
    "MailboxURL",
    "PollFailedError",
    "PollSummary",
    "bounce_address",
    "header_fields",
    "imap_quote",
    "imap_uid_set",
    "parse_mailbox_url",
    "processed_folder_problem",
    "return_path",
]
