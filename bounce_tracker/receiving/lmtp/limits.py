"""The LMTP server's limits across sessions: the DATA memory budget, the session cap
derived from the open-file limit, and log lines rate-limited to one a minute.

No Django, no I/O of its own: :class:`bounce_tracker.receiving.lmtp.protocol.LMTPServer`
holds one of each.
"""

from __future__ import annotations

import asyncio
import logging
import time

try:
    import resource
except ImportError:  # pragma: no cover - not on POSIX
    resource = None  # type: ignore[assignment]

#: File descriptors kept free for what is not a session: the listening socket, the
#: event loop's own, database connections, log files, one accept() over the cap.
FD_RESERVE = 64


def session_cap(max_sessions: int) -> int:
    """``max_sessions``, kept below the process's open-file limit (at least 1)."""
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            max_sessions = min(max_sessions, soft - FD_RESERVE)
    return max(1, max_sessions)


class RateLimitedLog:
    """One log line per ``interval`` seconds at most, counting what was left unsaid."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last = -interval
        self._suppressed = 0

    def warning(self, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d more like it since the last such line)"
            args = (*args, self._suppressed)
        self._last = now
        self._suppressed = 0
        self.logger.warning(message, *args, exc_info=exc_info)


class DataBudget:
    """Bytes all sessions may hold in DATA at once.

    A session reserves what it may hold before DATA starts (so a reservation never
    waits on another one and two sessions can't deadlock), gives back what it did not
    use once the final dot is read, and the rest after delivery.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0
        self._released = asyncio.Event()

    async def reserve(self, amount: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``amount`` bytes; False if none came.

        Always granted when nothing else is held, so one session can always proceed.
        """
        amount = min(amount, self.total)
        try:
            async with asyncio.timeout(timeout):
                while self.held + amount > self.total:
                    self._released.clear()
                    await self._released.wait()
        except TimeoutError:
            return False
        self.held += amount
        return True

    def release(self, amount: int) -> None:
        """Give ``amount`` bytes back; waiting sessions look again."""
        if amount > 0:
            self.held = max(0, self.held - amount)
            self._released.set()
