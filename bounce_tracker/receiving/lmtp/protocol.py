"""A small LMTP server (RFC 2033) on asyncio streams: the protocol only, no Django.

Commands: LHLO, MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT (and VRFY, HELP).
Extensions announced in the LHLO reply: PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME
and SIZE. After the final dot of DATA the server sends one reply per accepted
recipient, in RCPT order, as LMTP requires.

Memory stays bounded whatever the client sends: command lines are limited to
:data:`MAX_COMMAND_LINE` octets; DATA is read line by line (a longer line in pieces),
dot-unstuffed and handed to a :class:`DataSink` that the application provides, which
keeps at most the bytes it wants. A client that declares a ``SIZE=`` above the limit
is refused at MAIL (RFC 1870); one that sends more without declaring it is read to
the end and still gets its per-recipient replies (the sink decides what to keep).

The application plugs in through :class:`Delivery`:

- ``new_sink(envelope)`` returns the sink for one DATA section;
- ``deliver(envelope, sink)`` (a coroutine) returns one reply line per recipient,
  e.g. ``"250 2.0.0 <x@y> recorded"`` or ``"451 4.3.0 database unavailable"``.

:class:`LMTPServer` serves one listening socket; :meth:`LMTPServer.shutdown` stops
accepting, closes idle sessions with a 421 reply and lets sessions that are
receiving or delivering a message finish it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger("bounce_tracker.receiving.lmtp")

#: RFC 5321 allows 512 octets for a command line; leave room for long addresses.
MAX_COMMAND_LINE = 2048
#: DATA lines longer than this are read in pieces (memory stays bounded).
MAX_DATA_PIECE = 64 * 1024
MAX_RECIPIENTS = 1000
IDLE_TIMEOUT = 300.0

_PATH_RE = re.compile(r"^\s*<([^<>]*)>\s*(.*)$")


class DataSink(Protocol):
    """Receives the unstuffed DATA bytes, line by line (a long line in pieces)."""

    def write(self, chunk: bytes) -> None: ...


@dataclass
class Envelope:
    """One transaction: the client's name, the sender and the accepted recipients."""

    peer: str = ""
    lhlo: str = ""
    sender: str | None = None
    recipients: list[str] = field(default_factory=list)
    declared_size: int | None = None
    size: int = 0  # octets of DATA received (unstuffed, line endings as sent)


class Delivery(Protocol):
    def new_sink(self, envelope: Envelope) -> DataSink: ...

    def deliver(self, envelope: Envelope, sink: DataSink) -> Awaitable[list[str]]: ...


class _LineTooLongError(Exception):
    pass


class _ShutdownError(Exception):
    pass


class Session:
    """One client connection."""

    def __init__(
        self,
        server: LMTPServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "unix")
        self.lhlo = ""
        self.envelope = Envelope(peer=self.peer)
        self.idle = True  # waiting for a command: may be closed at shutdown
        self._replies: list[str] = []
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only on sockets created with proto=IPPROTO_TCP;
            # without it, pipelined replies wait for the client's delayed ACK (40 ms).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- I/O -----------------------------------------------------------------------

    def reply(self, *lines: str) -> None:
        """Queue reply lines; they go out together at the next :meth:`flush`."""
        self._replies.extend(lines)

    def write_replies(self) -> None:
        if self._replies:
            data = "".join(line + "\r\n" for line in self._replies)
            self._replies.clear()
            self.writer.write(data.encode("utf-8", "replace"))

    async def flush(self) -> None:
        self.write_replies()
        await self.writer.drain()

    async def read_command(self) -> str:
        self.idle = True
        try:
            if self.server.shutting_down:
                raise _ShutdownError
            # PIPELINING: replies are sent when the client's pipelined commands are
            # all read (nothing more buffered), as the RFC asks of servers.
            if not self.reader._buffer:  # type: ignore[attr-defined]
                await self.flush()
            try:
                async with asyncio.timeout(self.server.idle_timeout):
                    line = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                await self._discard_line()
                raise _LineTooLongError from None
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise ConnectionResetError("connection closed mid-line") from None
                raise
        finally:
            self.idle = False
        if len(line) > MAX_COMMAND_LINE:
            raise _LineTooLongError
        return line.rstrip(b"\r\n").decode("utf-8", "replace")

    async def _discard_line(self) -> None:
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self.reader.readexactly(exc.consumed)

    async def read_data(self, sink: DataSink) -> int:
        """Read DATA up to the final dot into ``sink``; the octets received."""
        size = 0
        at_line_start = True
        reader = self.reader
        loop = asyncio.get_running_loop()
        idle = self.server.idle_timeout
        async with asyncio.timeout(idle) as deadline:
            while True:
                deadline.reschedule(loop.time() + idle)  # per line, not per message
                try:
                    piece = await reader.readuntil(b"\n")
                    complete = True
                except asyncio.LimitOverrunError as exc:
                    piece = await reader.readexactly(min(exc.consumed, MAX_DATA_PIECE))
                    complete = False
                if at_line_start and piece[:1] == b".":
                    if complete and piece in (b".\r\n", b".\n"):
                        return size
                    piece = piece[1:]  # RFC 5321 4.5.2: remove the stuffed dot
                size += len(piece)
                sink.write(piece)
                at_line_start = complete

    # -- the conversation ----------------------------------------------------------

    async def run(self) -> None:
        self.reply(f"220 {self.server.hostname} LMTP {self.server.banner} ready")
        try:
            while True:
                try:
                    line = await self.read_command()
                except _LineTooLongError:
                    self.reply("500 5.5.2 Line too long")
                    continue
                verb, _, argument = line.partition(" ")
                handler = getattr(self, f"do_{verb.lower()}", None) if verb.isalpha() else None
                if handler is None:
                    self.reply("500 5.5.2 Command unrecognized")
                    continue
                if await handler(argument.strip()) is False:
                    break
        except _ShutdownError:
            self.reply(f"421 4.3.2 {self.server.hostname} shutting down, try again later")
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await self.flush()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def do_lhlo(self, argument: str) -> None:
        if not argument:
            self.reply("501 5.5.4 Syntax: LHLO hostname")
            return
        self.lhlo = argument
        self.envelope = Envelope(peer=self.peer, lhlo=argument)
        self.reply(
            f"250-{self.server.hostname}",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            f"250 SIZE {self.server.max_message_bytes}",
        )

    async def do_helo(self, argument: str) -> None:
        self.reply("500 5.5.1 This is an LMTP server: use LHLO")

    do_ehlo = do_helo

    async def do_mail(self, argument: str) -> None:
        if not self.lhlo:
            self.reply("503 5.5.1 Send LHLO first")
            return
        if self.envelope.sender is not None:
            self.reply("503 5.5.1 Nested MAIL command")
            return
        match = _PATH_RE.match(argument[5:]) if argument[:5].upper() == "FROM:" else None
        if match is None:
            self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        declared = None
        for parameter in match.group(2).split():
            name, _, value = parameter.partition("=")
            if name.upper() == "SIZE":
                if not value.isdigit():
                    self.reply("501 5.5.4 Bad SIZE parameter")
                    return
                declared = int(value)
        if declared is not None and declared > self.server.max_message_bytes:
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        self.envelope.sender = match.group(1)
        self.envelope.declared_size = declared
        self.reply("250 2.1.0 Sender OK")

    async def do_rcpt(self, argument: str) -> None:
        if self.envelope.sender is None:
            self.reply("503 5.5.1 Need MAIL before RCPT")
            return
        match = _PATH_RE.match(argument[3:]) if argument[:3].upper() == "TO:" else None
        if match is None or not match.group(1):
            self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        if len(self.envelope.recipients) >= MAX_RECIPIENTS:
            self.reply("452 4.5.3 Too many recipients")
            return
        self.envelope.recipients.append(match.group(1))
        self.reply("250 2.1.5 Recipient OK")

    async def do_data(self, argument: str) -> None:
        if not self.envelope.recipients:
            self.reply("503 5.5.1 No valid recipients")
            return
        envelope = self.envelope
        sink = self.server.delivery.new_sink(envelope)
        self.reply("354 2.0.0 End data with <CR><LF>.<CR><LF>")
        await self.flush()
        envelope.size = await self.read_data(sink)
        try:
            replies = await self.server.delivery.deliver(envelope, sink)
        except Exception:
            logger.exception("LMTP delivery failed")
            replies = ["451 4.3.0 Internal error, try again later"] * len(envelope.recipients)
        if len(replies) != len(envelope.recipients):  # the application's mistake
            logger.error(
                "LMTP delivery gave %d replies for %d recipients",
                len(replies),
                len(envelope.recipients),
            )
            replies = ["451 4.3.0 Internal error, try again later"] * len(envelope.recipients)
        self.reply(*replies)
        self.envelope = Envelope(peer=self.peer, lhlo=self.lhlo)

    async def do_rset(self, argument: str) -> None:
        self.envelope = Envelope(peer=self.peer, lhlo=self.lhlo)
        self.reply("250 2.0.0 OK")

    async def do_noop(self, argument: str) -> None:
        self.reply("250 2.0.0 OK")

    async def do_vrfy(self, argument: str) -> None:
        self.reply("252 2.5.2 Cannot VRFY user, but will accept message")

    async def do_help(self, argument: str) -> None:
        self.reply("214 2.0.0 Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT")

    async def do_quit(self, argument: str) -> bool:
        self.reply("221 2.0.0 Bye")
        return False


class LMTPServer:
    """Serves LMTP on one listening socket (TCP or Unix) in the running event loop."""

    def __init__(
        self,
        delivery: Delivery,
        *,
        max_message_bytes: int,
        hostname: str | None = None,
        banner: str = "bounce_tracker",
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.delivery = delivery
        self.max_message_bytes = max_message_bytes
        self.hostname = hostname or socket.getfqdn()
        self.banner = banner
        self.idle_timeout = idle_timeout
        self.shutting_down = False
        self._sessions: dict[asyncio.Task[None], Session] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self, sock: socket.socket) -> None:
        """Start accepting on ``sock`` (already bound and listening)."""
        if sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(
                self._session, sock=sock, limit=MAX_DATA_PIECE
            )
        else:
            self._server = await asyncio.start_server(
                self._session, sock=sock, limit=MAX_DATA_PIECE
            )

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        session = Session(self, reader, writer)
        if self.shutting_down:
            session.reply("421 4.3.2 shutting down, try again later")
            session.write_replies()
            writer.close()
            return
        self._sessions[task] = session
        try:
            await session.run()
        finally:
            self._sessions.pop(task, None)

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def shutdown(self, grace: float = 60.0) -> None:
        """Stop accepting; finish in-flight messages; close idle sessions with 421."""
        self.shutting_down = True
        if self._server is not None:
            self._server.close()
        for task, session in list(self._sessions.items()):
            if session.idle:
                task.cancel()
                session.reply("421 4.3.2 shutting down, try again later")
                with contextlib.suppress(Exception):
                    session.write_replies()
                    session.writer.close()
        pending = list(self._sessions)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
