"""A small LMTP server (RFC 2033) on asyncio streams: the protocol only, no Django.

Commands: LHLO, MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT (and VRFY, HELP).
Extensions announced in the LHLO reply: PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME
and SIZE. After the final dot of DATA the server sends one reply per accepted
recipient, in RCPT order, as LMTP requires.

Memory and time stay bounded whatever the client sends: command lines are limited to
:data:`MAX_COMMAND_LINE` octets; DATA is read line by line (a longer line in pieces),
dot-unstuffed and handed to a :class:`DataSink` that the application provides, which
keeps at most ``max_message_bytes``; all sessions together hold at most
``max_data_bytes_total`` in DATA (:class:`~bounce_tracker.receiving.lmtp.limits.DataBudget`);
replies are written out as they accumulate and a session whose unsent output passes
``max_output_buffer`` stops reading until the client reads; every read, discard and
drain runs under ``idle_timeout``; at most ``max_sessions`` sessions (kept below the
open-file limit), the others get a 421. DATA ends only at CRLF.CRLF.

SIZE (RFC 1870): ``size_limit`` is what LHLO announces and what a MAIL ``SIZE=`` is
checked against; :data:`SIZE_KEPT` (the default) announces ``max_message_bytes``,
``None`` announces ``SIZE`` with no number (no fixed maximum: a larger message is read
to the end and the sink keeps its first ``max_message_bytes``). A message larger than
what was announced, sent without declaring it, is read to the end too.

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
from typing import Any, Final, Protocol

from bounce_tracker.receiving.lmtp.limits import DataBudget, RateLimitedLog, session_cap

logger = logging.getLogger("bounce_tracker.receiving.lmtp")

#: RFC 5321 allows 512 octets for a command line; leave room for long addresses.
MAX_COMMAND_LINE = 2048
#: DATA lines longer than this are read in pieces (memory stays bounded).
MAX_DATA_PIECE = 64 * 1024
MAX_RECIPIENTS = 1000
IDLE_TIMEOUT = 300.0
DEFAULT_MAX_SESSIONS = 1000
#: Bytes all sessions may hold in DATA at once, unless told otherwise.
DEFAULT_DATA_BUDGET = 128 * 1024 * 1024
DEFAULT_MAX_OUTPUT_BUFFER = 64 * 1024
#: Seconds a DATA command waits for room in the budget before its 452.
DATA_BUDGET_WAIT = 30.0
#: Pipelined replies queued before they are written even if more commands are buffered.
REPLY_BATCH = 64
#: ``size_limit`` default: announce (and enforce at MAIL) ``max_message_bytes``.
SIZE_KEPT: Final = -1

_PATH_RE = re.compile(r"^\s*<([^<>]*)>\s*(.*)$")
_SIZE_RE = re.compile(r"^[0-9]{1,20}$")
_BODY_VALUES = ("7BIT", "8BITMIME")


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
        """Queue reply lines; they go out together before the next command is read."""
        self._replies.extend(lines)

    def write_replies(self) -> None:
        if self._replies:
            data = "".join(line + "\r\n" for line in self._replies)
            self._replies.clear()
            self.writer.write(data.encode("utf-8", "replace"))

    async def flush(self) -> None:
        """Write the queued replies; wait while the client leaves too much unread."""
        self.write_replies()
        if self.writer.transport.get_write_buffer_size():
            await self.writer.drain()  # returns at once below the high-water mark

    def close(self) -> None:
        """Close the connection; at once if the client left our output unread."""
        if self.writer.transport.get_write_buffer_size():
            self.writer.transport.abort()
        else:
            self.writer.close()

    async def read_command(self) -> str:
        self.idle = True
        try:
            if self.server.shutting_down:
                raise _ShutdownError
            if self.writer.transport.is_closing():  # closed under us: stop reading
                raise ConnectionResetError("connection closed")
            async with asyncio.timeout(self.server.idle_timeout):
                # PIPELINING: replies go out when no complete command is buffered
                # (the next read would wait for the client), as the RFC asks of
                # servers, or when a batch has piled up.
                buffered = self.reader._buffer  # type: ignore[attr-defined]
                if len(self._replies) >= REPLY_BATCH or buffered.find(b"\n") < 0:
                    await self.flush()
                try:
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
        """Read up to the end of an overlong line (the caller's timeout applies)."""
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self.reader.readexactly(exc.consumed)

    async def read_data(self, sink: DataSink) -> int:
        """Read DATA up to the final CRLF.CRLF into ``sink``; the octets received.

        Only CRLF ends a line (RFC 5321 2.3.8, 4.1.1.4): a dot after a bare LF is
        data, neither the end nor a stuffed dot.
        """
        size = 0
        at_line_start = True  # the CRLF of the DATA command came just before
        after_cr = False  # the last piece ended with CR (a CRLF split by a long line)
        reader = self.reader
        loop = asyncio.get_running_loop()
        idle = self.server.idle_timeout
        async with asyncio.timeout(idle) as deadline:
            while True:
                deadline.reschedule(loop.time() + idle)  # per line, not per message
                try:
                    piece = await reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as exc:
                    piece = await reader.readexactly(min(exc.consumed, MAX_DATA_PIECE))
                if at_line_start and piece[:1] == b".":
                    if piece == b".\r\n":
                        return size
                    piece = piece[1:]  # RFC 5321 4.5.2: remove the stuffed dot
                size += len(piece)
                sink.write(piece)
                at_line_start = piece.endswith(b"\r\n") or (after_cr and piece == b"\n")
                after_cr = piece.endswith(b"\r")

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
                handler = (
                    getattr(self, f"do_{verb.lower()}", None)
                    if verb.isascii() and verb.isalpha()
                    else None
                )
                if handler is None:
                    self.reply("500 5.5.2 Command unrecognized")
                    continue
                if await handler(argument.strip()) is False:
                    break
        except _ShutdownError:
            self.reply(f"421 4.3.2 {self.server.hostname} shutting down, try again later")
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        except Exception:  # a bug: one short line, the session ends, the server goes on
            self.server.errors.warning("LMTP session %s failed", self.peer, exc_info=True)
            self.reply("421 4.3.0 Internal error, closing")
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.flush()
            self.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
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
            "250 SIZE" if self.server.size_limit is None else f"250 SIZE {self.server.size_limit}",
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
            name = name.upper()
            if name == "SIZE":
                if not _SIZE_RE.match(value):
                    self.reply("501 5.5.4 Bad SIZE parameter")
                    return
                declared = int(value)
            elif name == "BODY":
                if value.upper() not in _BODY_VALUES:
                    self.reply("501 5.5.4 Bad BODY parameter")
                    return
            else:
                self.reply("555 5.5.4 Unsupported MAIL parameter")
                return
        limit = self.server.size_limit
        if declared is not None and limit is not None and declared > limit:
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
        if match.group(2).strip():
            self.reply("555 5.5.4 Unsupported RCPT parameter")
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
        self.envelope = Envelope(peer=self.peer, lhlo=self.lhlo)
        budget = self.server.data_budget
        reserved = self.server.max_message_bytes
        async with asyncio.timeout(self.server.idle_timeout):
            await self.flush()  # the client may be waiting for its RCPT replies
        if not await budget.reserve(reserved, min(DATA_BUDGET_WAIT, self.server.idle_timeout)):
            self.server.busy.warning(
                "LMTP DATA refused: %d bytes held in DATA, the budget is %d",
                budget.held,
                budget.total,
            )
            self.reply("452 4.3.1 Insufficient system storage, try again later")
            return
        try:
            sink = self.server.delivery.new_sink(envelope)
            self.reply("354 2.0.0 End data with <CR><LF>.<CR><LF>")
            async with asyncio.timeout(self.server.idle_timeout):
                await self.flush()
            envelope.size = await self.read_data(sink)
            held = min(envelope.size, reserved)
            budget.release(reserved - held)  # what this message didn't need
            reserved = held
            replies = await self._deliver(envelope, sink)
        finally:
            budget.release(reserved)
        self.reply(*replies)

    async def _deliver(self, envelope: Envelope, sink: DataSink) -> list[str]:
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
        return replies

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
    """Serves LMTP on one listening socket (TCP or Unix) in the running event loop.

    ``idle_timeout``: seconds a session may stay silent, or leave our replies unread,
    before it is closed. ``max_sessions``: concurrent sessions (kept below the
    open-file limit); over it a connection gets a 421 and is closed, and one log line
    a minute at most says so. ``max_data_bytes_total``: bytes all sessions may hold in
    DATA (default :data:`DEFAULT_DATA_BUDGET`, never less than one message); over it a
    DATA waits for room, then gets a 452. ``max_output_buffer``: unsent reply bytes
    after which a session stops reading the client. ``size_limit``: see the module.
    """

    def __init__(
        self,
        delivery: Delivery,
        *,
        max_message_bytes: int,
        hostname: str | None = None,
        banner: str = "bounce_tracker",
        idle_timeout: float = IDLE_TIMEOUT,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_data_bytes_total: int | None = None,
        max_output_buffer: int = DEFAULT_MAX_OUTPUT_BUFFER,
        size_limit: int | None = SIZE_KEPT,
    ) -> None:
        self.delivery = delivery
        self.max_message_bytes = max_message_bytes
        self.hostname = hostname or socket.getfqdn()
        self.banner = banner
        self.idle_timeout = idle_timeout
        self.max_sessions = session_cap(max_sessions)
        total = DEFAULT_DATA_BUDGET if max_data_bytes_total is None else max_data_bytes_total
        self.data_budget = DataBudget(max(total, max_message_bytes))
        self.max_output_buffer = max_output_buffer
        self.size_limit = max_message_bytes if size_limit == SIZE_KEPT else size_limit
        self.shutting_down = False
        self.busy = RateLimitedLog(logger)  # over the session cap, the budget, EMFILE
        self.errors = RateLimitedLog(logger)  # sessions ended by an unexpected error
        self.refused = 0  # connections refused over the session cap
        self._sessions: dict[asyncio.Task[None], Session] = {}
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_handler: Any = None

    async def start(self, sock: socket.socket) -> None:
        """Start accepting on ``sock`` (already bound and listening)."""
        loop = self._loop = asyncio.get_running_loop()
        # accept() failing for want of file descriptors: asyncio logs a traceback and
        # retries a second later; one line a minute is enough.
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)
        if sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(
                self._session, sock=sock, limit=MAX_DATA_PIECE
            )
        else:
            self._server = await asyncio.start_server(
                self._session, sock=sock, limit=MAX_DATA_PIECE
            )

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self.busy.warning(
                "LMTP accept() failed: %s (%d sessions open; raise LimitNOFILE or lower "
                "--max-sessions)",
                context.get("exception"),
                len(self._sessions),
            )
        elif self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.shutting_down or len(self._sessions) >= self.max_sessions:
            if self.shutting_down:
                writer.write(b"421 4.3.2 shutting down, try again later\r\n")
            else:
                self.refused += 1
                self.busy.warning(
                    "LMTP: %d sessions open (the cap); refusing connections with 421 (%d so far)",
                    len(self._sessions),
                    self.refused,
                )
                writer.write(b"421 4.3.2 too many sessions, try again later\r\n")
            writer.close()
            return
        writer.transport.set_write_buffer_limits(high=self.max_output_buffer)
        session = Session(self, reader, writer)
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
                    session.close()
        pending = list(self._sessions)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous_handler)
