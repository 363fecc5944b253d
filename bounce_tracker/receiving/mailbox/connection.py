"""Opening a connection to the mailbox: one piece for IMAP and POP3.

Both protocols connect the same three ways (``plain``; ``tls`` from the first byte;
``starttls``, upgraded on the plain port) and verify the server's certificate
against the system's trust store. A STARTTLS that fails (refused, or a certificate
that does not verify) closes the half-open connection at once, without a protocol
goodbye, and raises: nothing, not even LOGOUT or QUIT, is sent in clear after a
refused upgrade, and no socket is left open. What differs between the protocols is
only which client methods do that, named in a :class:`MailClient`.

:class:`MailboxReader` is the common start of a pass in either protocol: connect as
the URL says, then let the protocol's reader walk the mailbox.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from bounce_tracker.receiving.mailbox.url import MailboxURL

if TYPE_CHECKING:
    from bounce_tracker.receiving.mailbox.poller import MailboxPoller

Connection = TypeVar("Connection")


class MailboxError(Exception):
    """The mailbox could not be reached, read or changed now."""


@dataclass(frozen=True)
class MailClient(Generic[Connection]):
    """How one protocol's client library (imaplib, poplib) connects."""

    #: ``(host, port, timeout)``: a connection in clear.
    plain: Callable[[str, int, float], Connection]
    #: ``(host, port, context, timeout)``: a connection in TLS from the first byte.
    tls: Callable[[str, int, ssl.SSLContext, float], Connection]
    #: ``(connection, context)``: upgrade a plain connection (STARTTLS, STLS).
    starttls: Callable[[Connection, ssl.SSLContext], object]
    #: ``(connection)``: close the socket without a protocol goodbye.
    abandon: Callable[[Connection], object]


def connect(url: MailboxURL, client: MailClient[Connection], timeout: float) -> Connection:
    """A connection to ``url``'s server, secured as its scheme says (not logged in yet)."""
    context = ssl.create_default_context()
    if url.security == "tls":
        return client.tls(url.host, url.port, context, timeout)
    connection = client.plain(url.host, url.port, timeout)
    if url.security == "starttls":
        try:
            client.starttls(connection, context)
        except BaseException:
            with contextlib.suppress(Exception):
                client.abandon(connection)
            raise
    return connection


class MailboxReader(Generic[Connection]):
    """One pass over the poller's mailbox in one protocol.

    Subclasses name their :attr:`client` and implement :meth:`read`; what a pass
    did goes into ``poller.summary``.
    """

    client: MailClient[Connection]

    def __init__(self, poller: MailboxPoller) -> None:
        self.poller = poller
        self.url = poller.url

    def run(self) -> None:
        """Connect, then :meth:`read` the mailbox (which ends the session)."""
        self.read(connect(self.url, self.client, self.poller.timeout))

    def read(self, connection: Connection) -> None:
        """Log in, receive every message for the bounce domain, end the session."""
        raise NotImplementedError
