"""The LMTP service: sockets, database threads, shutdown and the pre-fork supervisor.

Postfix delivers mail for the bounce domain through ``lmtp:inet:127.0.0.1:10025``
(or ``lmtp:unix:/path``) instead of starting ``handle_bounce`` once per bounce. The
contract is the pipe target's: per recipient, ``250`` when the message was recorded,
was a duplicate or was stored as unmatched; ``451`` (try again later) when it could
not be recorded now, so Postfix keeps it in its queue.

The conversation itself is :mod:`bounce_tracker.receiving.lmtp.protocol`. Here:
:func:`listening_socket` binds the socket before any worker forks; :func:`run_receiver`
serves it in one or more processes (forked children sharing the socket, supervised
by the parent, which restarts any that dies); in each process :func:`serve` runs the
protocol and records each message with
:func:`bounce_tracker.receiving.receive.receive_message` in a pool of threads
(:class:`DatabaseThreads`), so database work never blocks the event loop. Each thread
keeps its database connection between messages and checks it before each one, so
the receiver reconnects by itself after a database restart. SIGTERM or SIGINT: stop
accepting, finish the messages in flight, return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from bounce_tracker.receiving.lmtp.protocol import Envelope, LMTPServer
from bounce_tracker.receiving.reporting import one_line

logger = logging.getLogger("bounce_tracker")

DEFAULT_ADDRPORT = "127.0.0.1:10025"
_ADDRPORT_RE = re.compile(r"^(?:(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\[\]]+)):)?(?P<port>\d+)$")
#: Seconds the messages in flight get to finish after SIGTERM.
SHUTDOWN_GRACE = 60.0


def parse_addrport(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` (on 127.0.0.1); ValueError otherwise."""
    match = _ADDRPORT_RE.match(value.strip())
    if not match or not 0 <= int(match.group("port")) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT, [IPV6]:PORT or PORT.")
    host = match.group("ipv6") or match.group("host") or "127.0.0.1"
    return host, int(match.group("port"))


def listening_socket(
    address: tuple[str, int] | None, unix_path: str | None, unix_mode: int = 0o666
) -> socket.socket:
    """A bound, listening, non-blocking socket (created before any worker forks).

    On ``unix_path`` when given (a socket file left there by an earlier run is
    replaced), else on the TCP ``address``. Raises OSError when it can't listen.
    """
    if unix_path:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(unix_path).st_mode):
                os.unlink(unix_path)  # left by an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(unix_path)
        os.chmod(unix_path, unix_mode)
    else:
        assert address is not None
        host, port = address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def socket_description(sock: socket.socket) -> str:
    """Where ``sock`` listens, as Postfix names it: ``unix:/path`` or ``inet:host:port``."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    return "inet:{}:{}".format(*sock.getsockname()[:2])


# --- Recording, in threads --------------------------------------------------------


class DatabaseThreads:
    """A fixed pool of threads for blocking Django work.

    Each thread keeps its own database connections; :meth:`close` ends the threads
    and closes their connections (a connection can only be closed by its thread).
    """

    def __init__(self, count: int) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"receive-bounces-db-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``function(*args)`` in one of the threads; its future result."""
        future: Future[Any] = Future()
        self._queue.put((future, function, args))
        return future

    def _work(self) -> None:
        from django.db import connections

        try:
            while (item := self._queue.get()) is not None:
                future, function, args = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(function(*args))
                except BaseException as exc:  # handed to the waiting coroutine
                    future.set_exception(exc)
        finally:
            connections.close_all()

    def close(self) -> None:
        """Let the threads finish the work queued, then end them."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)


class NormalizingBuilder:
    """The DATA sink: CRLF line ends become LF (as Postfix's pipe delivers them), so a
    message hashes the same through LMTP as through ``handle_bounce``."""

    def __init__(self, max_bytes: int) -> None:
        from bounce_tracker.receiving.receive import MessageBuilder

        self.builder = MessageBuilder(max_bytes)

    def write(self, chunk: bytes) -> None:
        """Keep ``chunk`` (one line or a piece of one), its CRLF made LF."""
        if chunk.endswith(b"\r\n"):
            chunk = chunk[:-2] + b"\n"
        self.builder.write(chunk)


def record_message(
    builder: NormalizingBuilder, envelope: Envelope, tracker_settings: Any
) -> list[str]:
    """Record one message for each recipient (in a database thread); the LMTP replies."""
    # Imported here, not at the top: the models need Django set up, the sockets don't.
    from django.db import close_old_connections, connections

    from bounce_tracker.core.events import Outcome
    from bounce_tracker.models import EventSource
    from bounce_tracker.receiving.receive import receive_message

    started = time.perf_counter()
    sender = envelope.sender or ""
    replies: list[str] = []
    summaries: list[str] = []
    message = builder.builder.finish()
    close_old_connections()
    try:
        for recipient in envelope.recipients:
            try:
                result = receive_message(
                    message,
                    sender,
                    recipient,
                    source=EventSource.LMTP,
                    tracker_settings=tracker_settings,
                )
            except Exception as exc:  # anything: not recorded, Postfix retries
                # LMTP replies are 7-bit text.
                why = one_line(exc).encode("ascii", "replace").decode("ascii")
                replies.append(f"451 4.3.0 <{recipient}> not recorded, try again later: {why}")
                summaries.append(f"to=<{recipient}> deferred ({why})")
                # A broken connection must not be reused for the next message.
                for connection in connections.all(initialized_only=True):
                    with contextlib.suppress(Exception):
                        connection.close()
                continue
            if result.outcome == Outcome.RECORDED:
                replies.append(f"250 2.0.0 <{recipient}> recorded ({result.kind})")
            elif result.outcome == Outcome.UNMATCHED:
                replies.append(f"250 2.0.0 <{recipient}> stored as unmatched")
            elif result.outcome == Outcome.NEEDS_REVIEW:  # logged at ERROR already
                replies.append(f"250 2.0.0 <{recipient}> kept for review: classifier failed")
            else:
                replies.append(f"250 2.0.0 <{recipient}> duplicate, recorded before")
            summaries.append(f"to=<{recipient}> {result.outcome} kind={result.kind}")
    finally:
        close_old_connections()
    logger.info(
        "lmtp from=<%s> size=%d%s %s (%.1f ms)",
        sender,
        message.size,
        " truncated" if message.truncated else "",
        ", ".join(summaries),
        (time.perf_counter() - started) * 1000,
    )
    return replies


class Receiver:
    """The :class:`bounce_tracker.receiving.lmtp.protocol.Delivery` that records bounces."""

    def __init__(self, threads: DatabaseThreads, tracker_settings: Any, max_bytes: int) -> None:
        self.threads = threads
        self.tracker_settings = tracker_settings
        self.max_bytes = max_bytes

    def new_sink(self, envelope: Envelope) -> NormalizingBuilder:
        """A sink keeping the first ``max_bytes`` of the message."""
        return NormalizingBuilder(self.max_bytes)

    async def deliver(self, envelope: Envelope, sink: Any) -> list[str]:
        """Record the message in a database thread; one reply per recipient."""
        future = self.threads.submit(record_message, sink, envelope, self.tracker_settings)
        return list(await asyncio.wrap_future(future))


# --- Serving ----------------------------------------------------------------------


async def serve(
    sock: socket.socket,
    *,
    threads: int,
    max_bytes: int,
    tracker_settings: Any,
    stop: asyncio.Event | None = None,
    started: Callable[[LMTPServer], None] | None = None,
    grace: float = SHUTDOWN_GRACE,
) -> None:
    """Serve LMTP on ``sock`` until SIGTERM/SIGINT (or ``stop``), then shut down."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    pool = DatabaseThreads(threads)
    server = LMTPServer(Receiver(pool, tracker_settings, max_bytes), max_message_bytes=max_bytes)
    try:
        await server.start(sock)
        if started:
            started(server)
        await stop.wait()
        await server.shutdown(grace)
    finally:
        await asyncio.to_thread(pool.close)


def run_receiver(
    sock: socket.socket,
    *,
    workers: int,
    threads: int,
    max_bytes: int,
    tracker_settings: Any,
) -> None:
    """Serve LMTP on ``sock`` in ``workers`` processes until SIGTERM or SIGINT.

    Takes ``sock`` over: it is closed (and its Unix socket file removed) on return.
    With one worker the server runs in this process; with more, forked children
    share the socket and this process supervises them (:func:`supervise`).
    """
    from django.db import connections

    unix_path = sock.getsockname() if sock.family == socket.AF_UNIX else None
    try:
        persistent_connections()
        logger.info(
            "receive_bounces: LMTP on %s, %d worker process(es) x %d database threads, SIZE %d",
            socket_description(sock),
            workers,
            threads,
            max_bytes,
        )
        connections.close_all()  # nothing shared with forked workers

        def run() -> None:
            asyncio.run(
                serve(sock, threads=threads, max_bytes=max_bytes, tracker_settings=tracker_settings)
            )

        if workers == 1:
            run()
        else:
            supervise(workers, run)
    finally:
        sock.close()
        if unix_path:
            with contextlib.suppress(OSError):
                os.unlink(unix_path)
    logger.info("receive_bounces: stopped")


def persistent_connections() -> None:
    """Keep each thread's connection between messages; check it before each one.

    ``CONN_MAX_AGE = 0`` (Django's default, right for requests) would reconnect for
    every bounce; a positive value set by the project is kept.
    """
    from django.db import connections

    for alias in connections:
        settings_dict = connections.settings[alias]
        if not settings_dict.get("CONN_MAX_AGE"):
            settings_dict["CONN_MAX_AGE"] = None
        settings_dict["CONN_HEALTH_CHECKS"] = True


def supervise(workers: int, run: Callable[[], None]) -> None:
    """Fork ``workers`` children running ``run``; restart any that dies; on SIGTERM
    or SIGINT forward SIGTERM and wait for all of them."""
    children: dict[int, int] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                run()
                code = 0
            except BaseException:
                logger.exception("receive_bounces worker failed")
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        children[pid] = slot

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(workers):
            spawn(slot)
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            slot = children.pop(pid, -1)
            if slot < 0 or stopping:
                continue
            logger.warning(
                "receive_bounces worker %d exited (status %d); starting another",
                pid,
                status,
            )
            time.sleep(1)
            if not stopping:
                spawn(slot)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
