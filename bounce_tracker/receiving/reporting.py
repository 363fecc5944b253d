"""How the receiving side's long-running commands report: log set-up and error reasons.

Shared by ``receive_bounces`` (the LMTP receiver) and ``poll_bounce_mailbox``:

- :func:`command_logging` gives a daemon log lines on stderr when the site has no
  logging configuration of its own, and otherwise leaves the site's configuration
  alone. It never sets ``propagate = False``: a site that logs through the root
  logger (Sentry, JSON logs) sees the receivers' errors like any other.
- :func:`one_line` turns an exception into the short reason that goes into an LMTP
  reply, a log line or a command's error message.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

#: The logger everything of the app logs to (the LMTP protocol to a child of it).
LOGGER_NAME = "bounce_tracker"
#: What a daemon's own stderr lines look like when the site configures no logging.
LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


@contextlib.contextmanager
def command_logging(verbosity: int, *, info_from: int) -> Iterator[logging.Handler | None]:
    """Log to stderr for the duration of a command, unless the site configures logging.

    When neither the ``bounce_tracker`` logger nor the root logger has a handler (the
    site's ``LOGGING`` sets up neither), a stderr handler is added to the
    ``bounce_tracker`` logger, at INFO from ``verbosity`` ``info_from`` on and at
    WARNING below it; it is removed again, and the level restored, on leaving.
    Otherwise nothing is changed: the site's handlers, levels and propagation decide.
    Yields the handler added, or None.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if logger.handlers or logging.getLogger().handlers:
        yield None
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbosity >= info_from else logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)


def one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: reason`` on one line, the reason cut to ``limit`` characters."""
    reason = " ".join(str(exc).split())[:limit]
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
