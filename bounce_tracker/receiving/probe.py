"""``handle_bounce --probe``: could this process record a bounce now? Records nothing.

``bounce_postfix_config --check`` runs the probe exactly as Postfix runs the pipe (as
the pipe's user, with the rendered interpreter, launcher, manage.py and environment),
so that a configuration that could never record a bounce fails before the first
bounce arrives. Getting as far as :func:`probe_recording` already shows that the
settings import and Django starts; then, in order:

1. ``settings``: the receiving side's settings are valid;
2. ``other-database``: the database is the one expected (the one the checking
   command uses), so a pipe that lacks ``DATABASE_URL`` and falls back to another
   database is caught even when that one works;
3. ``connect``: the database accepts a connection;
4. ``tables``: every table of the app exists with every column the code reads;
5. ``write``: the user may change them (an ``UPDATE`` that matches no row, e.g. a
   SQLite file the pipe user can't write).

It reads no message and leaves no trace: the statements match no row and run in a
transaction that is rolled back. A failure raises :class:`ProbeFailedError`, whose text
starts with the step's name.
"""

from __future__ import annotations

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import F, Model

from bounce_tracker.receiving.reporting import one_line
from bounce_tracker.receiving.settings import get_receiving_settings

STEPS = ("settings", "other-database", "connect", "tables", "write")


class ProbeFailedError(Exception):
    """A step of the probe failed: ``step`` is one of :data:`STEPS`, ``reason`` says why."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def database_label(alias: str = DEFAULT_DB_ALIAS) -> str:
    """Which database ``alias`` is, without its password: ``vendor NAME [on HOST:PORT]``."""
    connection = connections[alias]
    settings = connection.settings_dict
    label = f"{connection.vendor} {settings.get('NAME') or ''}".rstrip()
    host, port = settings.get("HOST") or "", settings.get("PORT") or ""
    if host or port:
        label += f" on {host or 'localhost'}" + (f":{port}" if port else "")
    return label


def probe_recording(expect_database: str | None = None, alias: str = DEFAULT_DB_ALIAS) -> str:
    """Run the steps of the probe; return a one-line summary, or raise :class:`ProbeFailedError`.

    ``expect_database`` is a :func:`database_label`; when given, any other database
    fails the ``other-database`` step.
    """
    try:
        get_receiving_settings()
    except Exception as exc:  # any invalid setting, reported by the step that found it
        raise ProbeFailedError("settings", one_line(exc)) from exc
    label = database_label(alias)
    if expect_database is not None and label != expect_database:
        raise ProbeFailedError("other-database", label)
    connection = connections[alias]
    try:
        connection.ensure_connection()
    except Exception as exc:  # drivers raise their own errors before Django wraps them
        raise ProbeFailedError("connect", f"{label}: {one_line(exc)}") from exc
    models = sorted(
        apps.get_app_config("bounce_tracker").get_models(), key=lambda m: m._meta.db_table
    )
    with transaction.atomic(using=alias):
        for model in models:
            _probe_table(model, alias)
        transaction.set_rollback(True, using=alias)
    return f"the pipe can record bounces in {label} ({len(models)} tables)"


def _probe_table(model: type[Model], alias: str) -> None:
    table = model._meta.db_table
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    manager = model._base_manager.using(alias)
    try:
        list(manager.values_list("pk", *(field.attname for field in fields))[:1])
    except DatabaseError as exc:
        raise ProbeFailedError("tables", f"{table}: {one_line(exc)}") from exc
    if fields:
        column = fields[0].attname
        try:
            # Matches no row (a primary key is never NULL) yet needs write permission.
            manager.filter(pk__isnull=True).update(**{column: F(column)})
        except DatabaseError as exc:
            raise ProbeFailedError("write", f"{table}: {one_line(exc)}") from exc
