"""The source: the original table in a MySQL/MariaDB database, read with MySQLdb.

:func:`parse_source_url` reads ``mysql://user:password@host:port/database``;
:class:`LegacySource` connects, checks that the table has the original columns and
streams its rows; :func:`source_timezone` names the zone its ``DATETIME`` values are
in. Every problem with the source is a :class:`LegacyImportError` whose message
names no command-line option: its ``argument`` says which input was at fault, for
the caller to word in its own terms.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings

#: The original table's columns, in the order they are read.
LEGACY_COLUMNS = (
    "EmailAddress",
    "EncodedFROM",
    "IgnoreBounces",
    "MsgCount",
    "FirstEmail",
    "LastEmail",
    "FirstBounce",
    "LastBounce",
    "LastBounce2",
    "LastBounce3",
    "BounceCount",
)
DEFAULT_TABLE = "EmailAddressTracker"
SCHEMES = ("mysql", "mariadb")
#: Rows fetched from the server at a time (the cursor streams; memory stays flat).
FETCH_ROWS = 5000


class LegacyImportError(Exception):
    """The source can't be read as the original table; the message says why.

    ``argument`` names the input at fault, as :func:`~bounce_tracker.ops.legacy.importer.
    import_legacy_table` calls it (``"url"``, ``"table"``, ``"timezone_name"``,
    ``"batch_size"``), or is None (the server or the table itself). With ``"table"``,
    ``suggestion`` is a table of the same name in other letter case, when there is one.
    """

    def __init__(
        self, message: str, *, argument: str | None = None, suggestion: str | None = None
    ) -> None:
        super().__init__(message)
        self.argument = argument
        self.suggestion = suggestion


@dataclass(frozen=True)
class SourceURL:
    """The parts of ``mysql://user:password@host:port/database`` that MySQLdb needs."""

    host: str
    port: int
    user: str
    password: str
    database: str
    unix_socket: str = ""
    charset: str = "utf8mb4"

    def display(self) -> str:
        """The URL without the password, for messages."""
        where = f"unix:{self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"
        user = f"{self.user}@" if self.user else ""
        return f"mysql://{user}{where}/{self.database}"

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``MySQLdb.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "charset": self.charset,
            "connect_timeout": 10,
        }
        if self.unix_socket:
            kwargs["unix_socket"] = self.unix_socket
        return kwargs


def parse_source_url(url: str) -> SourceURL:
    """Parse ``mysql://`` or ``mariadb://user:password@host:port/database[?options]``.

    Options: ``unix_socket=/path`` and ``charset=NAME`` (default utf8mb4). User and
    password may be percent-encoded. Raises :class:`LegacyImportError` naming the problem.
    """
    usage = "expected mysql://USER:PASSWORD@HOST:PORT/DATABASE (or mariadb://...)"

    def unreadable(problem: str) -> LegacyImportError:
        return LegacyImportError(f"Can't read SOURCE_URL: {problem}.", argument="url")

    try:
        parts = urlsplit(url.strip())
        port = parts.port or 3306
    except ValueError as exc:
        raise unreadable(f"{exc}; {usage}") from None
    if parts.scheme.lower() not in SCHEMES:
        scheme = f"'{parts.scheme}'" if parts.scheme else "no scheme"
        raise unreadable(f"{scheme} is not mysql or mariadb; {usage}")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise unreadable(f"it names no database; {usage}")
    options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = sorted(set(options) - {"unix_socket", "charset"})
    if unknown:
        raise unreadable(
            f"unknown option(s) {', '.join(unknown)}; only unix_socket and charset are understood"
        )
    return SourceURL(
        host=parts.hostname or "localhost",
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        unix_socket=options.get("unix_socket", ""),
        charset=options.get("charset", "utf8mb4"),
    )


def source_timezone(name: str | None) -> tzinfo:
    """The time zone named ``name``, or Django's ``TIME_ZONE``; LegacyImportError if unknown."""
    name = name or settings.TIME_ZONE or "UTC"
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise LegacyImportError(
            f"Unknown time zone {name!r} for the source's dates (e.g. UTC, Europe/Paris).",
            argument="timezone_name",
        ) from None


def _raw_text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class LegacySource:
    """The original table in a MySQL/MariaDB database, read with MySQLdb.

    Date and time columns are read as text and converted by
    :func:`~bounce_tracker.ops.legacy.cleaning.legacy_datetime`, so a zero date is
    never an error, whatever the mysqlclient version does with it.
    """

    def __init__(self, url: SourceURL, table: str = DEFAULT_TABLE) -> None:
        self.url = url
        self.table = table
        self._connection: Any = None

    def __enter__(self) -> LegacySource:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect and check that the table has the original columns."""
        try:
            import MySQLdb
            from MySQLdb.constants import FIELD_TYPE
            from MySQLdb.converters import conversions
        except ImportError:
            raise LegacyImportError(
                "Reading the legacy table needs mysqlclient: pip install mysqlclient."
            ) from None
        conv = dict(conversions)
        for field_type in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.DATE):
            conv[field_type] = _raw_text
        try:
            self._connection = MySQLdb.connect(conv=conv, **self.url.connect_kwargs())
        except MySQLdb.Error as exc:
            raise LegacyImportError(f"Can't connect to {self.url.display()}: {exc}") from None
        self._check_columns()

    def close(self) -> None:
        """Close the connection (quietly: nothing is left to save)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        import MySQLdb

        cursor = self._connection.cursor()
        try:
            cursor.execute(sql, params or None)
            return list(cursor.fetchall())
        except MySQLdb.Error as exc:
            raise LegacyImportError(
                f"Reading table '{self.table}' at {self.url.display()} failed: {exc}"
            ) from None
        finally:
            cursor.close()

    def _check_columns(self) -> None:
        found = {
            str(name).lower()
            for (name,) in self._query(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                self.table,
            )
        }
        if not found:
            raise self._table_not_found()
        missing = [column for column in LEGACY_COLUMNS if column.lower() not in found]
        if missing:
            raise LegacyImportError(
                f"Table '{self.table}' doesn't look like the original EmailAddressTracker "
                f"table: missing column(s) {', '.join(missing)}."
            )

    def _table_not_found(self) -> LegacyImportError:
        tables = sorted(
            str(name)
            for (name,) in self._query(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
            )
        )
        near = [name for name in tables if name.lower() == self.table.lower()]
        where = (
            f"Table '{self.table}' not found in database '{self.url.database}' "
            f"at {self.url.display()}"
        )
        if near:
            return LegacyImportError(
                f"{where}; '{near[0]}' differs only in letter case.",
                argument="table",
                suggestion=near[0],
            )
        listed = ", ".join(tables[:20]) or "none"
        more = " ..." if len(tables) > 20 else ""
        return LegacyImportError(f"{where}. Tables there: {listed}{more}.", argument="table")

    def count(self) -> int:
        """How many rows the table has."""
        [(rows,)] = self._query(f"SELECT COUNT(*) FROM {_quote_identifier(self.table)}")
        return int(rows)

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Every row, columns in :data:`LEGACY_COLUMNS` order, streamed from the server."""
        import MySQLdb.cursors

        columns = ", ".join(_quote_identifier(name) for name in LEGACY_COLUMNS)
        cursor = self._connection.cursor(MySQLdb.cursors.SSCursor)
        try:
            cursor.execute(f"SELECT {columns} FROM {_quote_identifier(self.table)}")
            while chunk := cursor.fetchmany(FETCH_ROWS):
                yield from chunk
        except MySQLdb.Error as exc:
            raise LegacyImportError(
                f"Reading table '{self.table}' at {self.url.display()} failed: {exc}"
            ) from None
        finally:
            with contextlib.suppress(MySQLdb.Error):
                cursor.close()
