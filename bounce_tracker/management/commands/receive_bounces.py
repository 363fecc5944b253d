"""``manage.py receive_bounces [ADDRPORT]``: the resident LMTP receiver.

Postfix delivers mail for the bounce domain through ``lmtp:inet:127.0.0.1:10025``
(or ``lmtp:unix:/path``): per recipient ``250`` when recorded or stored, ``451``
when Postfix should try again later. The service lives in
:mod:`bounce_tracker.receiving.lmtp`; this command reads its options and the
receiving settings, binds the socket and runs
:func:`bounce_tracker.receiving.lmtp.service.run_receiver` until SIGTERM or SIGINT
(exit 0). Bad options, bad settings or a socket it can't listen on: exit 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bounce_tracker.receiving.lmtp.service import (
    DEFAULT_ADDRPORT,
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
            default=1,
            help="processes sharing the listening socket (default: %(default)s)",
        )
        parser.add_argument(
            "--threads",
            type=int,
            default=10,
            help="database threads per process, like Postfix's delivery concurrency "
            "(default: %(default)s)",
        )
        parser.add_argument(
            "--max-message-bytes",
            type=int,
            default=None,
            help="bytes of a message kept (announced as SIZE); the rest is read and "
            "discarded (default: BOUNCE_TRACKER['MAX_MESSAGE_BYTES'])",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from bounce_tracker.receiving.settings import get_receiving_settings

        tracker_settings = get_receiving_settings()
        max_bytes = options["max_message_bytes"] or tracker_settings.max_message_bytes
        if max_bytes < 1024:
            raise CommandError("--max-message-bytes must be at least 1024.")
        workers, threads = options["workers"], options["threads"]
        if not 1 <= workers <= 256 or not 1 <= threads <= 1000:
            raise CommandError("--workers must be 1 to 256 and --threads 1 to 1000.")
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
            )
