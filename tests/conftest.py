"""Test-wide fixtures: database, Postfix and anymail availability, and the mail outbox.

The suite runs once per database (see the Makefile). When the database named by
DATABASE_URL can't be reached, its database tests are skipped with the reason, or
the run stops with an error when BOUNCE_TRACKER_REQUIRE_SERVICES=1 (as in CI).
A missing Postfix or django-anymail skips the tests that need it, or fails them
under BOUNCE_TRACKER_REQUIRE_SERVICES=1 (tests/services.py).
"""

from __future__ import annotations

import importlib
import os

import pytest
from django.db import connection

from tests.services import missing_service, services_required

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


def _postfix_problem() -> str | None:
    """Why the Postfix tests can't run here, or None when they can."""
    from tests.postfix_harness import POSTFIX

    if os.path.exists(POSTFIX):
        return None
    return f"{POSTFIX} is missing (apt-get install postfix)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _database_problem
    _database_problem = _check_database()
    postfix_problem = _postfix_problem()
    if _database_problem and services_required():
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
        if item.get_closest_marker("postfix") and postfix_problem and not services_required():
            item.add_marker(pytest.mark.skip(reason=postfix_problem))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a Postfix test without Postfix under BOUNCE_TRACKER_REQUIRE_SERVICES=1.

    Runs after the skip marks above (a test of another database's pass is skipped,
    not failed) and before the test's fixtures start anything.
    """
    if item.get_closest_marker("postfix") and services_required():
        problem = _postfix_problem()
        if problem:
            missing_service(problem)


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {connection.vendor} ({connection.settings_dict['NAME']})"


@pytest.fixture
def anymail_installed() -> None:
    """Skip, or fail under BOUNCE_TRACKER_REQUIRE_SERVICES=1, a test that needs django-anymail."""
    try:
        importlib.import_module("anymail.signals")
    except ImportError as exc:
        problem = f"django-anymail can't be imported ({exc}; pip install -e '.[dev]')"
    else:
        return
    missing_service(problem)  # outside the except: no "during handling" traceback


@pytest.fixture(autouse=True)
def _tracking_email_backend(settings):
    """Django's test runner swaps EMAIL_BACKEND for locmem; put the tracker back in front.

    The tracker wraps locmem (tests/settings.py), so ``mail.outbox`` holds the
    per-recipient copies the inner backend received.
    """
    settings.EMAIL_BACKEND = "bounce_tracker.backend.BounceTrackingBackend"
