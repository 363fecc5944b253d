"""Test-wide fixtures: database availability, and the mail outbox.

The suite runs once per database (see the Makefile). When the database named by
DATABASE_URL can't be reached, its database tests are skipped with the reason, or
the run stops with an error when BOUNCE_TRACKER_REQUIRE_SERVICES=1 (as in CI).
"""

from __future__ import annotations

import os

import pytest
from django.db import connection

REQUIRE_SERVICES = os.environ.get("BOUNCE_TRACKER_REQUIRE_SERVICES") == "1"
POSTFIX = "/usr/sbin/postfix"

_VENDOR_MARKERS = {"mysql": "mysql", "postgres": "postgresql"}
_database_problem: str | None = None


def _check_database() -> str | None:
    """Why the configured database server can't be used, or None when it can.

    Connects with the driver directly (pytest-django blocks the ORM outside tests),
    to the server rather than the database, which the test run creates.
    """
    settings_dict = connection.settings_dict
    host, port = settings_dict["HOST"] or "127.0.0.1", settings_dict["PORT"]
    try:
        if connection.vendor == "mysql":
            import MySQLdb

            MySQLdb.connect(
                host=host,
                port=int(port or 3306),
                user=settings_dict["USER"],
                password=settings_dict["PASSWORD"],
                connect_timeout=5,
            ).close()
        elif connection.vendor == "postgresql":
            import psycopg

            psycopg.connect(
                host=host,
                port=int(port or 5432),
                user=settings_dict["USER"],
                password=settings_dict["PASSWORD"] or None,
                dbname="postgres",
                connect_timeout=5,
            ).close()
    except Exception as exc:  # any driver error means "not usable here"
        return f"{connection.display_name} at {host}:{port} is not reachable: {exc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _database_problem
    _database_problem = _check_database()
    if _database_problem and REQUIRE_SERVICES:
        pytest.exit(f"BOUNCE_TRACKER_REQUIRE_SERVICES=1 and {_database_problem}", returncode=1)
    for item in items:
        for marker, vendor in _VENDOR_MARKERS.items():
            if item.get_closest_marker(marker) and connection.vendor != vendor:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"needs {vendor}; this pass runs on {connection.vendor}"
                    )
                )
        if _database_problem and item.get_closest_marker("django_db"):
            item.add_marker(pytest.mark.skip(reason=_database_problem))
        if item.get_closest_marker("browser") and connection.vendor == "sqlite":
            # SQLite's C library crashed (SIGSEGV) in teardown beside Playwright's
            # greenlets; the browser tests run against a database server.
            item.add_marker(pytest.mark.skip(reason="browser tests run on MariaDB/PostgreSQL"))
        if item.get_closest_marker("postfix") and not os.path.exists(POSTFIX):
            if REQUIRE_SERVICES:
                item.add_marker(
                    pytest.mark.xfail(
                        reason=f"BOUNCE_TRACKER_REQUIRE_SERVICES=1 but {POSTFIX} is missing",
                        run=False,
                        strict=True,
                    )
                )
            else:
                item.add_marker(
                    pytest.mark.skip(reason=f"{POSTFIX} is missing (apt-get install postfix)")
                )


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {connection.vendor} ({connection.settings_dict['NAME']})"


@pytest.fixture(autouse=True)
def _tracking_email_backend(settings):
    """Django's test runner swaps EMAIL_BACKEND for locmem; put the tracker back in front.

    The tracker wraps locmem (tests/settings.py), so ``mail.outbox`` holds the
    per-recipient copies the inner backend received.
    """
    settings.EMAIL_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"
