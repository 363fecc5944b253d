"""``manage.py import_legacy_tracker SOURCE_URL``: import the original recipe's table.

Reads the PHP recipe's ``EmailAddressTracker`` table from a MySQL/MariaDB database
(``mysql://user:password@host:port/database``) into this app's trackers in the
``default`` database; :mod:`bounce_tracker.ops.legacy` has the rules. ``--dry-run`` shows
what would change and writes nothing. Running it again changes nothing.

Output: examples of what was merged, skipped, re-encoded or in conflict, then a
one-paragraph summary, on standard output; progress bars (reading the rows, writing
the addresses) on standard error when it is a terminal. Exit status 1 (a
:class:`CommandError`) only when the source can't be read as the original table: a
bad URL, no connection, a missing table or column, or a bad option.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bounce_tracker.core.settings import get_settings
from bounce_tracker.management.progress import ProgressBars
from bounce_tracker.ops.legacy import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TABLE,
    LegacyImportError,
    import_legacy_table,
)

#: The option that sets each argument of import_legacy_table, for error messages.
_OPTIONS = {"batch_size": "--batch-size", "timezone_name": "--source-timezone"}


def _command_error(exc: LegacyImportError) -> CommandError:
    """The library's error, worded with this command's options."""
    if exc.argument == "table":
        hint = f"Did you mean --table {exc.suggestion}?" if exc.suggestion else "Use --table NAME."
        return CommandError(f"{exc} {hint}")
    option = _OPTIONS.get(exc.argument or "")
    return CommandError(f"{option}: {exc}" if option else str(exc))


class Command(BaseCommand):
    help = (
        "Import the original PHP recipe's EmailAddressTracker table from "
        "mysql://USER:PASSWORD@HOST:PORT/DATABASE (run with --dry-run first)."
    )
    # Not every app's system checks: a bad key of another room (BACKEND, MAILBOX_URL…)
    # must not stop the import. The keys it reads are validated when it reads them.
    requires_system_checks: tuple[str, ...] = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "source_url",
            metavar="SOURCE_URL",
            help="the legacy database: mysql:// or mariadb://USER:PASSWORD@HOST:PORT/DATABASE "
            "(options: ?unix_socket=/path, ?charset=NAME)",
        )
        parser.add_argument(
            "--table",
            default=DEFAULT_TABLE,
            help="the legacy table (default: %(default)s)",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="show what would be created, updated, merged and skipped; write nothing",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help="addresses written per transaction (default: %(default)s)",
        )
        parser.add_argument(
            "--source-timezone",
            default=None,
            metavar="ZONE",
            help="the time zone the legacy DATETIME values are in, e.g. Europe/Paris "
            "(default: settings.TIME_ZONE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with ProgressBars(self.stderr) as bars:
                report = import_legacy_table(
                    options["source_url"],
                    get_settings(),
                    table=options["table"],
                    dry_run=options["dry_run"],
                    batch_size=options["batch_size"],
                    timezone_name=options["source_timezone"],
                    progress=bars.show,
                )
        except LegacyImportError as exc:
            raise _command_error(exc) from None
        if options["verbosity"] >= 1:
            for line in report.details():
                self.stdout.write(line)
        self.stdout.write(report.summary())
