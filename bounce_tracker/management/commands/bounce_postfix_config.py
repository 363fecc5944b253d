"""``manage.py bounce_postfix_config``: the Postfix configuration for this installation.

Prints the main.cf lines, the master.cf pipe service and the transport map entry
(with ``--lmtp [ADDR]``: the transport entry for the resident LMTP receiver instead),
rendered from ``postfix_templates/`` with this installation's absolute interpreter
and manage.py paths and its BOUNCE_TRACKER settings. ``--check`` also runs
``postfix check`` on them in a throwaway configuration directory and, for the pipe,
runs ``handle_bounce --probe`` exactly as Postfix will run the pipe (as its user,
with its interpreter, launcher, manage.py and environment) against the database
this command uses (:mod:`bounce_tracker.ops.pipe_check`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bounce_tracker.core.settings import TrackerSettings, get_settings
from bounce_tracker.ops.pipe_check import check_pipe
from bounce_tracker.ops.postfix import (
    DEFAULT_LMTP,
    PipeOptions,
    PostfixConfigError,
    check,
    default_manage_py,
    lmtp_nexthop,
    render_text,
)


class Command(BaseCommand):
    help = "Print the Postfix configuration that pipes bounces into handle_bounce."
    # Not every app's system checks: a bad key of another room (BACKEND, MAILBOX_URL…)
    # must not stop the Postfix configuration. The keys it reads are validated when it reads them.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--service",
            default="bouncehandler",
            help="master.cf service name (default: %(default)s)",
        )
        parser.add_argument(
            "--user",
            default="nobody",
            help="unprivileged user the pipe runs as (default: %(default)s); "
            "it must be able to read the interpreter and the project",
        )
        parser.add_argument(
            "--maxproc",
            type=int,
            default=10,
            help="how many handlers Postfix runs at once (default: %(default)s)",
        )
        parser.add_argument(
            "--python",
            default=sys.executable,
            help="absolute interpreter path (default: this one, %(default)s)",
        )
        parser.add_argument(
            "--manage-py",
            default=default_manage_py(),
            help="absolute path of manage.py (default: the one running now)",
        )
        parser.add_argument(
            "--env",
            action="append",
            default=[],
            metavar="NAME[=VALUE]",
            help="an environment variable for the command; NAME alone takes "
            "its current value. DJANGO_SETTINGS_MODULE is always set. "
            "master.cf is world-readable: pass no secrets here.",
        )
        parser.add_argument(
            "--map-type",
            default="hash",
            help="transport map type: hash (needs postmap), texthash, lmdb, cdb",
        )
        parser.add_argument(
            "--transport-path",
            default="/etc/postfix/transport",
            help="transport map file (default: %(default)s)",
        )
        parser.add_argument(
            "--lmtp",
            nargs="?",
            const=DEFAULT_LMTP,
            default=None,
            metavar="ADDR",
            help="route bounces to the resident LMTP receiver (receive_bounces) instead "
            f"of the pipe: HOST:PORT (default {DEFAULT_LMTP}), inet:HOST:PORT, "
            "unix:/path or /path",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="also run 'postfix check' on the rendered configuration and, as root, "
            "the pipe's probe (handle_bounce --probe) as the pipe user, with its interpreter, "
            "environment and manage.py, against this command's database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["manage_py"]:
            raise CommandError(
                "Can't tell where manage.py is: run it as 'python manage.py "
                "bounce_postfix_config' or pass --manage-py /absolute/path."
            )
        pipe_options = PipeOptions(
            python=os.path.abspath(options["python"]),
            manage_py=os.path.abspath(options["manage_py"]),
            service=options["service"],
            user=options["user"],
            maxproc=options["maxproc"],
            environment=self._environment(options["env"]),
            map_type=options["map_type"],
            transport_path=options["transport_path"],
            lmtp=lmtp_nexthop(options["lmtp"]) if options["lmtp"] else None,
        )
        tracker_settings = get_settings()
        try:
            self.stdout.write(render_text(pipe_options, tracker_settings))
            if options["check"]:
                self._check(pipe_options, tracker_settings)
        except PostfixConfigError as exc:
            raise CommandError(str(exc)) from None

    def _check(self, pipe_options: PipeOptions, tracker_settings: TrackerSettings) -> None:
        problems = []
        result = check(pipe_options, tracker_settings)
        if result.ok:
            self.stderr.write("postfix check: OK")
        else:
            problems.append(f"postfix check failed:\n{result.output}")
        if pipe_options.lmtp is None:  # with LMTP there is no pipe to run
            from bounce_tracker.receiving.probe import database_label

            probe = check_pipe(pipe_options, expect_database=database_label())
            heading = f"pipe probe as {pipe_options.user}"
            if probe.ok:
                self.stderr.write(f"{heading}: OK ({probe.summary})")
            else:
                problems += [f"{heading}: {line}" for line in probe.problems]
        if problems:
            raise CommandError("\n".join(problems))

    def _environment(self, assignments: list[str]) -> dict[str, str]:
        environment: dict[str, str] = {}
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
        if settings_module:
            environment["DJANGO_SETTINGS_MODULE"] = settings_module
        for assignment in assignments:
            name, sep, value = assignment.partition("=")
            if not sep:
                if name not in os.environ:
                    raise CommandError(
                        f"--env {name}: not set in this environment; use --env {name}=VALUE."
                    )
                value = os.environ[name]
            environment[name] = value
        return environment
