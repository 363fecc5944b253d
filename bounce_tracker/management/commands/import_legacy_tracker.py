"""``manage.py import_legacy_tracker SOURCE_URL``: import the original recipe's table.

Reads the PHP recipe's ``EmailAddressTracker`` table from a MySQL/MariaDB database
(``mysql://user:password@host:port/database``) into this app's trackers in the
``default`` database; :mod:`bounce_tracker.ops.legacy` has the rules. ``--dry-run`` shows
what would change and writes nothing. Running it again changes nothing.

Output: examples of what was merged, skipped, re-encoded or in conflict, then a
one-paragraph summary, on standard output; a progress line on standard error when it
is a terminal. Exit status 1 (a :class:`CommandError`) only when the source can't be
read as the original table: a bad URL, no connection, a missing table or column.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bounce_tracker.core.settings import get_settings
from bounce_tracker.ops.legacy import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_TABLE,
    LegacyImportError,
    import_legacy_table,
)


class Command(BaseCommand):
    help = (
        "Import the original PHP recipe's EmailAddressTracker table from "
        "mysql://USER:PASSWORD@HOST:PORT/DATABASE (run with --dry-run first)."
    )

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
        progress = None
        if self.stderr.isatty():

            def progress(text: str) -> None:
                self.stderr.write(text, style_func=str, ending="")  # no colour
                self.stderr.flush()

        try:
            report = import_legacy_table(
                options["source_url"],
                get_settings(),
                table=options["table"],
                dry_run=options["dry_run"],
                batch_size=options["batch_size"],
                timezone_name=options["source_timezone"],
                progress=progress,
            )
        except LegacyImportError as exc:
            raise CommandError(str(exc)) from None
        if options["verbosity"] >= 1:
            for line in report.details():
                self.stdout.write(line)
        self.stdout.write(report.summary())
