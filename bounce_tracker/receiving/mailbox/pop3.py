"""One pass over a POP3 mailbox for the mailbox poller (``MailboxPoller``).

Each message's header is read with ``TOP n 0`` (``RETR`` where the server has no
TOP), the messages for the bounce domain are read whole with ``RETR`` in bounded
memory, received through the poller and marked with ``DELE`` once the database
holds them. The deletions take effect at ``QUIT``, which is sent also when a
database error stops the pass; a connection that failed is closed without QUIT, so
the server deletes nothing.
"""

from __future__ import annotations

import contextlib
import poplib

from bounce_tracker.receiving.mailbox.connection import MailboxError, MailboxReader, MailClient
from bounce_tracker.receiving.mailbox.headers import header_fields, return_path

#: Header bytes read per POP3 message to find its address.
POP3_HEADER_BYTES = 64 * 1024

POP3_CLIENT: MailClient[poplib.POP3] = MailClient(
    plain=poplib.POP3,
    tls=lambda host, port, ctx, t: poplib.POP3_SSL(host, port, context=ctx, timeout=t),
    starttls=poplib.POP3.stls,
    abandon=poplib.POP3.close,
)


class POP3Reader(MailboxReader[poplib.POP3]):
    """Reads the poller's POP3 mailbox once."""

    client = POP3_CLIENT

    def read(self, connection: poplib.POP3) -> None:
        """Log in, receive every message for the bounce domain, QUIT."""
        finished = False
        try:
            connection.user(self.url.username)
            connection.pass_(self.url.password)
            _, listing, _ = connection.list()
            numbers = [int(line.split()[0]) for line in listing]
            pending = 0
            try:
                for number in numbers:
                    if self.poller.should_stop():
                        break
                    if self.receive_one(connection, number):
                        connection.dele(number)
                        pending += 1
            finally:
                # QUIT commits the deletions, also when a database error stopped the run.
                connection.quit()
                finished = True
                self.poller.summary.removed += pending
        finally:
            if not finished:
                with contextlib.suppress(Exception):
                    self.client.abandon(connection)  # no QUIT: the server deletes nothing

    def receive_one(self, connection: poplib.POP3, number: int) -> bool:
        """Receive message ``number`` if it is for the bounce domain; True when it may go."""
        where = f"pop3 #{number}"
        limit = self.poller.settings.max_message_bytes
        retrieved = None
        try:
            header_block, _ = pop3_multiline(connection, f"TOP {number} 0", POP3_HEADER_BYTES)
        except poplib.error_proto:  # TOP is optional in POP3: read the message instead
            retrieved = pop3_multiline(connection, f"RETR {number}", limit)
            header_block = retrieved[0]
        fields = header_fields(header_block)
        address = self.poller.address(fields, where)
        if address is None:
            return False
        raw, total = retrieved or pop3_multiline(connection, f"RETR {number}", limit)
        return self.poller.receive(raw, total, address, return_path(fields), where)


def pop3_multiline(connection: poplib.POP3, command: str, max_bytes: int) -> tuple[bytes, int]:
    """Send a POP3 command with a multi-line answer; (its first ``max_bytes``, its size).

    poplib's own ``retr`` keeps the whole message in memory and rejects lines longer
    than 2048 bytes; this reads any message in bounded memory.
    """
    connection.sock.sendall(command.encode("ascii") + b"\r\n")
    status = connection.file.readline(8192)
    if not status.startswith(b"+OK"):
        raise poplib.error_proto(f"{command.split()[0]}: {status.decode(errors='replace').strip()}")
    kept = bytearray()
    size = 0
    at_line_start = True
    while True:
        piece = connection.file.readline(64 * 1024)
        if not piece:
            raise MailboxError(f"the connection closed during {command.split()[0]}")
        if at_line_start:
            if piece in (b".\r\n", b".\n"):
                break
            if piece.startswith(b"."):
                piece = piece[1:]  # dot-stuffing
        at_line_start = piece.endswith(b"\n")
        size += len(piece)
        if len(kept) < max_bytes:
            kept += piece[: max_bytes - len(kept)]
    return bytes(kept), size
