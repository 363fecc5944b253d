"""How fast ``import_legacy_tracker`` imports the original table: rows per second.

Builds a legacy ``EmailAddressTracker`` table of ``--rows`` rows (default 100,000:
a third with zero dates, one in 50 a case variant of its neighbour, as in the test)
in a scratch MariaDB database (``--source-url``, created and dropped by the script),
then imports it into an empty destination database (``--database-url``: SQLite file
by default, or MariaDB/PostgreSQL, created if missing and emptied first), three
times: a dry run, the import, and a second run that changes nothing.

Run from the repository root::

    .venv/bin/python benchmarks/import_legacy.py
    .venv/bin/python benchmarks/import_legacy.py --database-url mysql://root:@127.0.0.1:3306/bounce_tracker_legacy_bench
    .venv/bin/python benchmarks/import_legacy.py --profile   # cProfile of the import

It prints rows/s per run and always exits 0: it measures, it does not judge.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import platform
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from send_overhead import create_database, database_config  # noqa: E402

DEFAULT_SOURCE = "mysql://root@127.0.0.1:3306/bt_legacy_bench_src"


def build_source(url: str, rows: int) -> None:
    """Create the scratch source database and its legacy table."""
    import MySQLdb

    from bounce_tracker.ops.legacy.source import parse_source_url
    from tests.test_import_legacy_tracker import INSERT, LEGACY_DDL, big_legacy_table

    source = parse_source_url(url)
    kwargs = source.connect_kwargs()
    database = kwargs.pop("database")
    with contextlib.closing(MySQLdb.connect(**kwargs)) as server:
        cursor = server.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cursor.execute(f"USE `{database}`")
        cursor.execute("SET SESSION sql_mode = ''")
        cursor.execute(LEGACY_DDL.format(table="EmailAddressTracker"))
        data, _ = big_legacy_table(rows)
        for start in range(0, len(data), 5000):
            cursor.executemany(
                INSERT.format(table="EmailAddressTracker"), data[start : start + 5000]
            )
        server.commit()


def drop_source(url: str) -> None:
    import MySQLdb

    from bounce_tracker.ops.legacy.source import parse_source_url

    kwargs = parse_source_url(url).connect_kwargs()
    database = kwargs.pop("database")
    with contextlib.closing(MySQLdb.connect(**kwargs)) as server:
        server.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")


def configure_django(database: dict[str, Any]) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        SECRET_KEY="benchmark-only-secret-key-" + "0123456789" * 4,
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "bounce_tracker"],
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        BOUNCE_TRACKER={"BOUNCE_DOMAIN": "bounces.example.com"},
    )
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def run(label: str, url: str, rows: int, batch_size: int, **options: Any) -> None:
    from django.core.management import call_command

    out = io.StringIO()
    started = time.monotonic()
    call_command(
        "import_legacy_tracker", url, batch_size=batch_size, stdout=out, verbosity=0, **options
    )
    seconds = time.monotonic() - started
    print(f"{label:<12} {rows:>9,} rows {seconds:7.1f} s {rows / seconds:>9,.0f} rows/s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--source-url", default=DEFAULT_SOURCE)
    parser.add_argument("--database-url", default=None, help="destination (default: SQLite)")
    parser.add_argument("--profile", action="store_true", help="cProfile the import run")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bt-legacy-bench-"))
    database = database_config(args.database_url, workdir)
    create_database(database)
    configure_django(database)
    from django.db import connection

    from bounce_tracker.models import EmailAddressTracker

    EmailAddressTracker.objects.all().delete()
    build_source(args.source_url, args.rows)
    try:
        print(
            f"import_legacy_tracker: MariaDB source -> {connection.vendor} destination, "
            f"batch {args.batch_size:,}, Python {platform.python_version()}"
        )
        run("dry run", args.source_url, args.rows, args.batch_size, dry_run=True)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        run("import", args.source_url, args.rows, args.batch_size)
        if profiler:
            profiler.disable()
        run("second run", args.source_url, args.rows, args.batch_size)
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    finally:
        drop_source(args.source_url)
        EmailAddressTracker.objects.all().delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
