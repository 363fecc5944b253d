"""``manage.py receive_bounces [ADDRPORT]``: the resident LMTP receiver.

Postfix delivers mail for the bounce domain through ``lmtp:inet:127.0.0.1:10025``
(or ``lmtp:unix:/path``): per recipient ``250`` when recorded or stored, ``451``
when Postfix should try again later. With no options it listens on
127.0.0.1:10025 in one worker process per CPU it may use. The service lives in
:mod:`bounce_tracker.receiving.lmtp`; this command reads its options and the
receiving settings, binds the socket and runs
:func:`bounce_tracker.receiving.lmtp.service.run_receiver` until SIGTERM or SIGINT
(exit 0). Bad options, bad settings or a socket it can't listen on: exit 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bounce_tracker.receiving.lmtp.protocol import DEFAULT_MAX_SESSIONS, IDLE_TIMEOUT
from bounce_tracker.receiving.lmtp.service import (
    DEFAULT_ADDRPORT,
    DEFAULT_THREADS,
    default_workers,
    listening_socket,
    parse_addrport,
    run_receiver,
)
from bounce_tracker.receiving.reporting import command_logging


class Command(BaseCommand):
    help = (
        "Run the resident LMTP receiver for bounces (Postfix: lmtp:inet:127.0.0.1:10025). "
        "Replies 250 per recipient when recorded or stored, 451 when Postfix should retry."
    )
    # Not every app's system checks: a bad key of another room (BACKEND, say) must not
    # stop the receiver. It validates the keys it reads itself, with the same check IDs.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport",
            nargs="?",
            default=DEFAULT_ADDRPORT,
            help=f"HOST:PORT, [IPV6]:PORT or PORT to listen on (default: {DEFAULT_ADDRPORT})",
        )
        parser.add_argument(
            "--unix", metavar="PATH", help="listen on this Unix socket instead of TCP"
        )
        parser.add_argument(
            "--unix-mode",
            default="666",
            help="permissions of the Unix socket, octal (default: %(default)s); Postfix's "
            "lmtp client must be able to connect",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes sharing the listening socket (default: the CPUs this process "
            f"may use, os.sched_getaffinity; {default_workers()} here)",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=DEFAULT_THREADS,
            help="database threads per process: messages recorded at once by each "
            "(default: %(default)s, the best in benchmarks/receiver.py)",
        )
        parser.add_argument(
            "--max-message-bytes",
            type=int,
            default=None,
            help="bytes of a message kept; the rest is read and discarded "
            "(default: BOUNCE_TRACKER['MAX_MESSAGE_BYTES'])",
        )
        parser.add_argument(
            "--idle-timeout",
            type=float,
            default=IDLE_TIMEOUT,
            metavar="SECONDS",
            help="close a session that sends nothing, or leaves our replies unread, for "
            "this long (default: %(default)g)",
        )
        parser.add_argument(
            "--max-sessions",
            type=int,
            default=DEFAULT_MAX_SESSIONS,
            metavar="N",
            help="concurrent LMTP sessions per worker process (default: %(default)s; kept "
            "below the open-file limit); over it a connection gets 421 and Postfix tries "
            "again later",
        )
        parser.add_argument(
            "--size-limit",
            type=int,
            default=None,
            metavar="BYTES",
            help="the SIZE announced to clients (e.g. Postfix's message_size_limit); a "
            "larger message is refused at MAIL. Default: no limit announced, and a message "
            "of any size is read, its first --max-message-bytes kept",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from bounce_tracker.receiving.settings import get_receiving_settings

        tracker_settings = get_receiving_settings()
        max_bytes = options["max_message_bytes"] or tracker_settings.max_message_bytes
        if max_bytes < 1024:
            raise CommandError("--max-message-bytes must be at least 1024.")
        workers = options["workers"] or default_workers()
        threads = options["threads"]
        if not 1 <= workers <= 256 or not 1 <= threads <= 1000:
            raise CommandError("--workers must be 1 to 256 and --threads 1 to 1000.")
        idle_timeout, max_sessions = options["idle_timeout"], options["max_sessions"]
        if not idle_timeout > 0:
            raise CommandError("--idle-timeout must be more than 0 seconds.")
        if max_sessions < 1:
            raise CommandError("--max-sessions must be at least 1.")
        size_limit = options["size_limit"]
        if size_limit is not None and size_limit < 1:
            raise CommandError("--size-limit must be at least 1.")
        try:
            unix_mode = int(options["unix_mode"], 8)
        except ValueError:
            raise CommandError(f"--unix-mode {options['unix_mode']!r} is not octal.") from None
        unix_path = options["unix"]
        try:
            address = None if unix_path else parse_addrport(options["addrport"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        with command_logging(options["verbosity"], info_from=1):
            try:
                sock = listening_socket(address, unix_path, unix_mode)
            except OSError as exc:
                raise CommandError(
                    f"Can't listen on {unix_path or options['addrport']}: {exc}"
                ) from None
            run_receiver(
                sock,
                workers=workers,
                threads=threads,
                max_bytes=max_bytes,
                tracker_settings=tracker_settings,
                idle_timeout=idle_timeout,
                max_sessions=max_sessions,
                size_limit=size_limit,
            )
