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

from bounce_tracker.receiving.lmtp.protocol import (
    DEFAULT_MAX_SESSIONS,
    IDLE_TIMEOUT,
    SIZE_KEPT,
    Envelope,
    LMTPServer,
)
from bounce_tracker.receiving.reporting import one_line

logger = logging.getLogger("bounce_tracker")

DEFAULT_ADDRPORT = "127.0.0.1:10025"
_ADDRPORT_RE = re.compile(r"^(?:(?:\[(?P<ipv6>[^\]]+)\]|(?P<host>[^:\[\]]+)):)?(?P<port>\d+)$")
#: Database threads per worker process (``--threads``): benchmarks/receiver.py.
DEFAULT_THREADS = 10
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
    """Record one message for each recipient (in a database thread); the LMTP replies.

    The message is classified once, whatever the number of recipients. The thread's
    database connection is kept between messages and not pinged before each one: a
    connection the server dropped (a restart, ``wait_timeout``) fails the first
    query, and the recipient is then tried once more on a new connection, so the
    message after a database restart is recorded, not deferred.
    """
    # Imported here, not at the top: the models need Django set up, the sockets don't.
    from django.db import close_old_connections

    from bounce_tracker.classify import classify_message
    from bounce_tracker.core.events import Outcome
    from bounce_tracker.models import EventSource
    from bounce_tracker.receiving import receive

    started = time.perf_counter()
    sender = envelope.sender or ""
    replies: list[str] = []
    summaries: list[str] = []
    message = builder.builder.finish()
    classification = classify_message(message.data)
    close_old_connections()  # CONN_MAX_AGE, and a connection an error left unusable
    for recipient in envelope.recipients:
        opened = _open_connections()
        try:
            try:
                result = receive.receive_message(
                    message,
                    sender,
                    recipient,
                    source=EventSource.LMTP,
                    tracker_settings=tracker_settings,
                    classification=classification,
                )
            except Exception:
                if not _drop_broken_connections(opened):
                    raise
                result = receive.receive_message(  # once more, on a new connection
                    message,
                    sender,
                    recipient,
                    source=EventSource.LMTP,
                    tracker_settings=tracker_settings,
                    classification=classification,
                )
        except Exception as exc:  # anything: not recorded, Postfix retries
            # LMTP replies are 7-bit text.
            why = one_line(exc).encode("ascii", "replace").decode("ascii")
            replies.append(f"451 4.3.0 <{recipient}> not recorded, try again later: {why}")
            summaries.append(f"to=<{recipient}> deferred ({why})")
            # A broken connection must not be reused for the next message.
            _close_connections()
            continue
        outcome = result.outcome
        if outcome == Outcome.RECORDED:
            replies.append(f"250 2.0.0 <{recipient}> recorded ({result.kind})")
        elif outcome == Outcome.UNMATCHED:
            replies.append(f"250 2.0.0 <{recipient}> stored as unmatched")
        elif outcome == Outcome.NEEDS_REVIEW:  # logged at ERROR already
            replies.append(f"250 2.0.0 <{recipient}> kept for review: classifier failed")
        else:
            replies.append(f"250 2.0.0 <{recipient}> duplicate, recorded before")
        summaries.append(f"to=<{recipient}> {outcome} kind={result.kind}")
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "lmtp from=<%s> size=%d%s %s (%.1f ms)",
            sender,
            message.size,
            " truncated" if message.truncated else "",
            ", ".join(summaries),
            (time.perf_counter() - started) * 1000,
        )
    return replies


def _open_connections() -> dict[str, int]:
    """This thread's open database connections: alias → identity of the driver's one."""
    from django.db import connections

    return {
        wrapper.alias: id(wrapper.connection)
        for wrapper in connections.all(initialized_only=True)
        if wrapper.connection is not None
    }


def _drop_broken_connections(opened: dict[str, int]) -> bool:
    """After a failure: close this thread's connections that no longer work, and say
    whether one that was open before the failure broke (then one more try is worth it).

    Broken means: unusable now, or no longer the same connection — Django closes a
    connection whose ROLLBACK fails after the failure and opens a new one when it
    restores autocommit (PostgreSQL, after "terminating connection due to
    administrator command"). A connection that still answers (the failure was a lock
    wait timeout, say) is kept, and the failure stands; so does a failure to connect
    at all.
    """
    from django.db import connections

    dropped = False
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            return False  # not ours to close
        was_open = connection.alias in opened
        if connection.connection is None:
            dropped = dropped or was_open
            continue
        if was_open and id(connection.connection) != opened[connection.alias]:
            dropped = True
            continue
        usable = False
        with contextlib.suppress(Exception):
            usable = connection.is_usable()
        if not usable:
            with contextlib.suppress(Exception):
                connection.close()
            dropped = True
    return dropped


def _close_connections() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        with contextlib.suppress(Exception):
            connection.close()


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
    idle_timeout: float = IDLE_TIMEOUT,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_data_bytes_total: int | None = None,
    size_limit: int | None = SIZE_KEPT,
) -> None:
    """Serve LMTP on ``sock`` until SIGTERM/SIGINT (or ``stop``), then shut down.

    ``idle_timeout``, ``max_sessions``, ``max_data_bytes_total`` and ``size_limit``
    go to :class:`~bounce_tracker.receiving.lmtp.protocol.LMTPServer`.
    """
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    pool = DatabaseThreads(threads)
    server = LMTPServer(
        Receiver(pool, tracker_settings, max_bytes),
        max_message_bytes=max_bytes,
        idle_timeout=idle_timeout,
        max_sessions=max_sessions,
        max_data_bytes_total=max_data_bytes_total,
        size_limit=size_limit,
    )
    try:
        await server.start(sock)
        if started:
            started(server)
        await stop.wait()
        await server.shutdown(grace)
    finally:
        await asyncio.to_thread(pool.close)


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def run_receiver(
    sock: socket.socket,
    *,
    workers: int,
    threads: int,
    max_bytes: int,
    tracker_settings: Any,
    idle_timeout: float = IDLE_TIMEOUT,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_data_bytes_total: int | None = None,
    size_limit: int | None = SIZE_KEPT,
) -> None:
    """Serve LMTP on ``sock`` in ``workers`` processes until SIGTERM or SIGINT.

    Takes ``sock`` over: it is closed (and its Unix socket file removed) on return.
    With one worker the server runs in this process; with more, forked children
    share the socket and this process supervises them (:func:`supervise`), closing
    its own copy of the socket as soon as it is told to stop.
    """
    from django.db import connections

    unix_path = sock.getsockname() if sock.family == socket.AF_UNIX else None
    try:
        persistent_connections()
        size = "none (reads and keeps the first bytes)" if size_limit is None else size_limit
        logger.info(
            "receive_bounces: LMTP on %s, %d worker process(es) x %d database threads, "
            "keeps %d bytes of a message, SIZE %s, idle timeout %g s, at most %d sessions "
            "per process",
            socket_description(sock),
            workers,
            threads,
            max_bytes,
            max_bytes if size_limit == SIZE_KEPT else size,
            idle_timeout,
            max_sessions,
        )
        connections.close_all()  # nothing shared with forked workers

        def run() -> None:
            asyncio.run(
                serve(
                    sock,
                    threads=threads,
                    max_bytes=max_bytes,
                    tracker_settings=tracker_settings,
                    idle_timeout=idle_timeout,
                    max_sessions=max_sessions,
                    max_data_bytes_total=max_data_bytes_total,
                    size_limit=size_limit,
                )
            )

        if workers == 1:
            run()
        else:
            supervise(workers, run, sock)
    finally:
        sock.close()
        if unix_path:
            with contextlib.suppress(OSError):
                os.unlink(unix_path)
    logger.info("receive_bounces: stopped")


def persistent_connections() -> None:
    """Keep each thread's connection between messages.

    ``CONN_MAX_AGE = 0`` (Django's default, right for requests) would reconnect for
    every bounce; a positive value set by the project is kept. No health check (a
    ping) before each message: :func:`record_message` retries a recipient once on a
    new connection when the old one turns out broken.
    """
    from django.db import connections

    for alias in connections:
        settings_dict = connections.settings[alias]
        if not settings_dict.get("CONN_MAX_AGE"):
            settings_dict["CONN_MAX_AGE"] = None


def supervise(workers: int, run: Callable[[], None], sock: socket.socket | None = None) -> None:
    """Fork ``workers`` children running ``run``; restart any that dies; on SIGTERM
    or SIGINT close ``sock`` (the listening socket the children share), forward
    SIGTERM and wait for all of them.

    Closing the parent's copy at once matters: while any process holds the listening
    socket open, the kernel keeps accepting connections into its backlog, and those
    would wait for a banner that never comes. Once the children have closed theirs
    too (their first step of shutting down), new connections are refused.
    """
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
        if sock is not None:
            sock.close()
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
