"""Importing the original PHP recipe's ``EmailAddressTracker`` table (``import_legacy_tracker``).

The source is the original MySQL/MariaDB table, read with MySQLdb directly; the
destination is :class:`~bounce_tracker.models.EmailAddressTracker` in the ``default``
database. The rules, in the order they apply (``docs/migrating.rst`` explains why):

1. **Rows.** ``EmailAddress`` is stripped and checked: empty, no ``@``, no local part
   or domain, a control character or whitespace, ``<``, ``>`` or ``,``, or longer than
   254 octets (also once the domain is in IDNA form) means the row is *skipped* and
   reported. Dates are read as naive values in the source time zone; zero dates
   (``0000-00-00 00:00:00``, also partial ones such as ``2020-05-00``) become NULL.
   Counts that are NULL or negative become 0.
2. **Case duplicates** in the source (rows whose addresses are equal once
   normalized) are *merged* into one address: counts summed, ``first_*`` the
   earliest, ``last_email`` the latest, the three latest distinct bounce times of all
   rows, ``ignore_bounces`` if any row had it. One ``EncodedFROM`` is kept: the one of
   the row with the latest ``LastEmail`` (the most recent mail bounces to it); ties go
   to the row whose ``EmailAddress`` sorts first. The others are reported as dropped.
3. **EncodedFROM** is kept, lower-cased, as ``encoded_from``, so bounces to the old
   return paths keep matching. A value that can't be stored (empty, over 64
   characters, whitespace, a control character or ``@``) is *re-encoded*: the
   address gets the local part this installation would give it.
4. **Conflicts.** Two source addresses with the same ``EncodedFROM``: the first by
   address keeps it, the other is re-encoded. An ``EncodedFROM`` already used by a
   tracker of another address: that tracker keeps it, the imported address is
   re-encoded. An address that already has a tracker with another ``encoded_from``:
   the existing ``encoded_from`` is kept (mail sent by this app since bounces to it)
   and the row is merged as in 5.
5. **An existing tracker** for the address is merged with the legacy values so that
   running the import again changes nothing: counts become the larger of the two
   (not the sum: a second run would add them again, and the app can't tell whether
   the existing counts already include the legacy ones), ``first_*`` the earliest,
   ``last_email`` the latest, the bounce times the three latest distinct of both,
   ``ignore_bounces`` true if either is. The suppression mark is never touched.
"""

from __future__ import annotations

import contextlib
import re
import time
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from bounce_tracker.core.addresses import (
    MAX_ADDRESS_OCTETS,
    InvalidAddressError,
    has_line_break,
    normalize_email,
)
from bounce_tracker.core.settings import MAX_LOCAL_PART_OCTETS, TrackerSettings
from bounce_tracker.core.verp import address_token, encode_local_part
from bounce_tracker.models import EmailAddressTracker

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
DEFAULT_BATCH_SIZE = 2000
#: Examples kept per kind of event for the report (fewer of the routine kinds).
EXAMPLES_PER_KIND = 10
ROUTINE_EXAMPLES = 3
_ROUTINE_KINDS = frozenset({"created", "updated"})
#: The largest count every supported database stores in a PositiveIntegerField.
MAX_COUNT = 2_147_483_647
#: Attempts for one batch when a concurrent writer took an address or local part.
BATCH_ATTEMPTS = 3
SCHEMES = ("mysql", "mariadb")
FETCH_ROWS = 5000

_TRUE_TEXT = frozenset({"1", "y", "yes", "t", "true", "on"})
#: Control characters, including every line break Python's email package breaks at.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
#: What a single bare address never contains (unicode whitespace included).
_NOT_BARE_RE = re.compile(r"[\s<>,]")
#: What a stored VERP local part never contains.
_BAD_LOCAL_PART_RE = re.compile(r"[\x00-\x1f\x7f\s@]")
_MERGED_FIELDS = (
    "ignore_bounces",
    "msg_count",
    "bounce_count",
    "first_email",
    "last_email",
    "first_bounce",
    "last_bounce",
    "last_bounce2",
    "last_bounce3",
)


class LegacyImportError(Exception):
    """The source can't be read as the original table; the message says why."""


# ---------------------------------------------------------------------------------------
# The source: URL, connection, schema check, rows.


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
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 3306
    except ValueError as exc:
        raise LegacyImportError(f"Can't read SOURCE_URL: {exc}; {usage}.") from None
    if parts.scheme.lower() not in SCHEMES:
        scheme = f"'{parts.scheme}'" if parts.scheme else "no scheme"
        raise LegacyImportError(
            f"Can't read SOURCE_URL: {scheme} is not mysql or mariadb; {usage}."
        )
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise LegacyImportError(f"Can't read SOURCE_URL: it names no database; {usage}.")
    options = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = sorted(set(options) - {"unix_socket", "charset"})
    if unknown:
        raise LegacyImportError(
            f"Can't read SOURCE_URL: unknown option(s) {', '.join(unknown)}; "
            "only unix_socket and charset are understood."
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


def _raw_text(value: str | bytes) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class LegacySource:
    """The original table in a MySQL/MariaDB database, read with MySQLdb.

    Date and time columns are read as text and converted by :func:`legacy_datetime`,
    so a zero date is never an error, whatever the mysqlclient version does with it.
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
            tables = sorted(
                str(name)
                for (name,) in self._query(
                    "SELECT TABLE_NAME FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE()"
                )
            )
            near = [name for name in tables if name.lower() == self.table.lower()]
            hint = (
                f" Did you mean --table {near[0]}?"
                if near
                else f" Tables there: {', '.join(tables[:20]) or 'none'}"
                + (" ..." if len(tables) > 20 else "")
                + ". Use --table NAME."
            )
            raise LegacyImportError(
                f"Table '{self.table}' not found in database '{self.url.database}' "
                f"at {self.url.display()}.{hint}"
            )
        missing = [column for column in LEGACY_COLUMNS if column.lower() not in found]
        if missing:
            raise LegacyImportError(
                f"Table '{self.table}' doesn't look like the original EmailAddressTracker "
                f"table: missing column(s) {', '.join(missing)}."
            )

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


# ---------------------------------------------------------------------------------------
# One source row.


class InvalidLegacyRowError(ValueError):
    """A source row that can't be imported; the message says why."""


def clean_address(value: object) -> str:
    """The normalized address of an ``EmailAddress``; :class:`InvalidLegacyRowError` if none."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidLegacyRowError("not valid UTF-8") from None
    if value is None or not isinstance(value, str) or not value.strip():
        raise InvalidLegacyRowError("empty")
    text = value.strip()
    if _CONTROL_RE.search(text) or has_line_break(text):
        raise InvalidLegacyRowError("contains a control character")
    if _NOT_BARE_RE.search(text):
        raise InvalidLegacyRowError("not one bare address (whitespace, <, > or ,)")
    local_part, at, domain = text.rpartition("@")
    if not at:
        raise InvalidLegacyRowError("no @")
    if not local_part or not domain:
        raise InvalidLegacyRowError("no local part or no domain")
    if len(text.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise InvalidLegacyRowError(f"longer than {MAX_ADDRESS_OCTETS} octets")
    try:
        return normalize_email(text)
    except InvalidAddressError:
        raise InvalidLegacyRowError(
            f"longer than {MAX_ADDRESS_OCTETS} octets with its domain in IDNA form"
        ) from None


def clean_local_part(value: object) -> str:
    """The lower-cased ``EncodedFROM``, or ``""`` when it can't be stored and used."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if not text or len(text) > MAX_LOCAL_PART_OCTETS or _BAD_LOCAL_PART_RE.search(text):
        return ""
    return text.lower()


def legacy_flag(value: object) -> bool:
    """``IgnoreBounces`` as a bool: numbers, ``'Y'``/``'yes'``/``'true'``, bit fields."""
    if value is None:
        return False
    if isinstance(value, bytes):
        if len(value) == 1 and value not in (b"0", b"1"):
            return value != b"\x00"  # a BIT(1) column
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    return bool(value)


def legacy_count(value: object) -> int:
    """A count column as a non-negative int that fits every database (NULL is 0)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    try:
        number: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
    return min(max(number, 0), MAX_COUNT)


class UnreadableDateError(ValueError):
    """A date that is neither a zero date nor a valid date and time."""


def legacy_datetime(value: object, source_tz: tzinfo) -> datetime | None:
    """A naive source value as a datetime for the ``default`` database, or None for never.

    ``None`` (mysqlclient's zero date) and any value with a zero year, month or day
    (``0000-00-00 00:00:00``, ``2020-05-00``) mean "never". Naive values are taken as
    wall-clock time in ``source_tz``: aware with ``USE_TZ``, otherwise converted to
    ``TIME_ZONE`` and left naive, as Django stores them. Raises :class:`UnreadableDateError`.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text or text[:4] == "0000" or text[5:7] == "00" or text[8:10] == "00":
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise UnreadableDateError(text) from None
    if not isinstance(value, datetime):
        if isinstance(value, date):
            value = datetime(value.year, value.month, value.day)
        else:
            raise UnreadableDateError(repr(value))
    if timezone.is_aware(value):
        value = value.replace(tzinfo=None)
    local = value.replace(tzinfo=source_tz)
    if settings.USE_TZ:
        return local
    return local.astimezone(timezone.get_default_timezone()).replace(tzinfo=None)


def latest_distinct(times: Iterable[datetime | None], keep: int = 3) -> list[datetime | None]:
    """The ``keep`` latest distinct times, latest first, padded with None."""
    distinct = sorted({value for value in times if value is not None}, reverse=True)[:keep]
    return [*distinct, *[None] * (keep - len(distinct))]


def _earliest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


def _latest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return max(present) if present else None


@dataclass(slots=True)
class LegacyRow:
    """One source row, converted; ``address`` is ``EmailAddress`` as written."""

    address: str
    email: str
    encoded_from: str
    raw_encoded_from: str
    ignore_bounces: bool
    msg_count: int
    first_email: datetime | None
    last_email: datetime | None
    first_bounce: datetime | None
    bounce_times: tuple[datetime | None, ...]
    bounce_count: int


@dataclass(slots=True)
class LegacyRecord:
    """One address to import: one source row, or the merge of its case duplicates."""

    email: str
    addresses: list[str]
    encoded_from: str
    encoded_from_address: str
    dropped_encoded_from: list[tuple[str, str]]
    ignore_bounces: bool
    msg_count: int
    bounce_count: int
    first_email: datetime | None
    last_email: datetime | None
    first_bounce: datetime | None
    last_bounce: datetime | None
    last_bounce2: datetime | None
    last_bounce3: datetime | None
    unusable_encoded_from: str = ""
    reencode_reason: str = ""

    def values(self) -> dict[str, Any]:
        """The tracker fields this record sets (``encoded_from`` aside)."""
        return {name: getattr(self, name) for name in _MERGED_FIELDS}


def merge_rows(email: str, rows: Sequence[LegacyRow]) -> LegacyRecord:
    """One record for the rows of one address (see rule 2 in the module docstring)."""

    def keeps(row: LegacyRow) -> tuple[bool, bool, float, str]:
        # Sorted ascending: a usable value first, then the latest LastEmail, then the
        # address that sorts first.
        if row.last_email is None:
            return (not row.encoded_from, True, 0.0, row.address)
        return (not row.encoded_from, False, -row.last_email.timestamp(), row.address)

    ordered = sorted(rows, key=keeps)
    kept = ordered[0]
    dropped = [
        (row.encoded_from, row.address)
        for row in ordered[1:]
        if row.encoded_from and row.encoded_from != kept.encoded_from
    ]
    times = latest_distinct(time for row in rows for time in row.bounce_times)
    return LegacyRecord(
        email=email,
        addresses=sorted(row.address for row in rows),
        encoded_from=kept.encoded_from,
        encoded_from_address=kept.address,
        dropped_encoded_from=sorted(set(dropped)),
        ignore_bounces=any(row.ignore_bounces for row in rows),
        msg_count=min(sum(row.msg_count for row in rows), MAX_COUNT),
        bounce_count=min(sum(row.bounce_count for row in rows), MAX_COUNT),
        first_email=_earliest(*(row.first_email for row in rows)),
        last_email=_latest(*(row.last_email for row in rows)),
        first_bounce=_earliest(*(row.first_bounce for row in rows)),
        last_bounce=times[0],
        last_bounce2=times[1],
        last_bounce3=times[2],
        unusable_encoded_from="" if kept.encoded_from else kept.raw_encoded_from,
        reencode_reason="" if kept.encoded_from else "is empty or can't be stored",
    )


def merge_with_existing(tracker: EmailAddressTracker, record: LegacyRecord) -> dict[str, Any]:
    """The fields of ``tracker`` that importing ``record`` changes, with their new values.

    Counts: the larger; first_*: the earliest; last_email: the latest; bounce times:
    the three latest distinct of both; ignore_bounces: either. Applying the result and
    merging the same record again gives ``{}``.
    """
    times = latest_distinct(
        [
            tracker.last_bounce,
            tracker.last_bounce2,
            tracker.last_bounce3,
            record.last_bounce,
            record.last_bounce2,
            record.last_bounce3,
        ]
    )
    merged: dict[str, Any] = {
        "ignore_bounces": tracker.ignore_bounces or record.ignore_bounces,
        "msg_count": max(tracker.msg_count, record.msg_count),
        "bounce_count": max(tracker.bounce_count, record.bounce_count),
        "first_email": _earliest(tracker.first_email, record.first_email),
        "last_email": _latest(tracker.last_email, record.last_email),
        "first_bounce": _earliest(tracker.first_bounce, record.first_bounce),
        "last_bounce": times[0],
        "last_bounce2": times[1],
        "last_bounce3": times[2],
    }
    return {name: value for name, value in merged.items() if getattr(tracker, name) != value}


# ---------------------------------------------------------------------------------------
# The report.


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do)."""

    source: str
    table: str
    dry_run: bool
    source_rows: int = 0
    addresses: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged_addresses: int = 0
    merged_rows: int = 0
    skipped: int = 0
    conflicts: int = 0
    reencoded: int = 0
    unreadable_dates: int = 0
    seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def note(self, kind: str, text: str) -> None:
        """Keep ``text`` as an example of ``kind`` (the first few only)."""
        limit = ROUTINE_EXAMPLES if kind in _ROUTINE_KINDS else EXAMPLES_PER_KIND
        if len(self.examples[kind]) < limit:
            self.examples[kind].append(text)

    @property
    def rows_per_second(self) -> float:
        return self.source_rows / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One paragraph for people."""
        verb = "Dry run, nothing written: would import" if self.dry_run else "Imported"
        would = "would be " if self.dry_run else ""
        parts = [
            f"{verb} {self.source_rows:,} rows of table '{self.table}' from {self.source} "
            f"in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s) as "
            f"{self.addresses:,} addresses: {self.created:,} {would}created, "
            f"{self.updated:,} {would}updated, {self.unchanged:,} unchanged."
        ]
        if self.merged_rows:
            parts.append(
                f"{self.merged_rows:,} rows differing only in letter case {would}merged "
                f"into {self.merged_addresses:,} addresses."
            )
        if self.skipped:
            parts.append(f"{self.skipped:,} invalid rows skipped.")
        if self.conflicts:
            parts.append(
                f"{self.conflicts:,} conflicts on encoded_from (the existing value is kept)."
            )
        if self.reencoded:
            parts.append(
                f"{self.reencoded:,} addresses {would}given a new encoded_from "
                "(their EncodedFROM was unusable or taken)."
            )
        if self.unreadable_dates:
            parts.append(f"{self.unreadable_dates:,} unreadable dates {would}stored as NULL.")
        return " ".join(parts)

    def details(self) -> list[str]:
        """Example lines per kind, for the command's output."""
        lines: list[str] = []
        for kind, examples in self.examples.items():
            lines.extend(f"{kind}: {text}" for text in examples)
        return lines


# ---------------------------------------------------------------------------------------
# Progress.


class Progress:
    """A ``\\r``-updated line (rows done, total, rows/s); silent when ``write`` is None.

    The command passes a writer only when standard error is a terminal. Two phases:
    ``reading`` counts source rows, ``writing`` counts addresses.
    """

    def __init__(
        self, write: Callable[[str], None] | None, total: int, interval: float = 0.2
    ) -> None:
        self.write = write
        self.interval = interval
        self.label = "reading"
        self.total = total
        self.started = time.monotonic()
        self._shown_at = 0.0
        self._width = 0

    def phase(self, label: str, total: int) -> None:
        """Start counting ``total`` rows of a new phase, with its own rate."""
        self.label, self.total = label, total
        self.started = time.monotonic()
        self._shown_at = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        """Show ``done`` rows of the total, at most every ``interval`` seconds."""
        if self.write is None:
            return
        now = time.monotonic()
        if not force and now - self._shown_at < self.interval:
            return
        self._shown_at = now
        rate = done / max(now - self.started, 1e-9)
        line = f"{self.label}: {done:,}/{self.total:,} rows, {rate:,.0f} rows/s"
        self.write("\r" + line.ljust(self._width))
        self._width = len(line)

    def finish(self) -> None:
        """Clear the line."""
        if self.write is not None and self._width:
            self.write("\r" + " " * self._width + "\r")


# ---------------------------------------------------------------------------------------
# The import.


@dataclass
class _Plan:
    create: list[EmailAddressTracker] = field(default_factory=list)
    update: list[EmailAddressTracker] = field(default_factory=list)
    update_fields: set[str] = field(default_factory=set)
    notes: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    conflicts: int = 0
    reencoded: int = 0


class LegacyImporter:
    """Reads converted source rows, merges them and writes them in batches.

    ``rows`` are tuples in :data:`LEGACY_COLUMNS` order, as :meth:`LegacySource.rows`
    yields them (tests pass lists). Nothing is written with ``dry_run``; the counts
    are the same as a real run's.
    """

    def __init__(
        self,
        tracker_settings: TrackerSettings,
        *,
        source_tz: tzinfo,
        report: ImportReport,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> None:
        self.tracker_settings = tracker_settings
        self.source_tz = source_tz
        self.report = report
        self.batch_size = batch_size
        self.progress = progress or Progress(None, 0)
        self._legacy_codes: set[str] = set()

    def run(self, rows: Iterable[Sequence[Any]]) -> ImportReport:
        """Import ``rows``; returns the report (also ``self.report``)."""
        started = time.monotonic()
        records = self.collect(rows)
        self.write(records)
        self.report.seconds = time.monotonic() - started
        self.progress.finish()
        return self.report

    # Reading -----------------------------------------------------------------------

    def convert(self, values: Sequence[Any]) -> LegacyRow:
        """One source row as a :class:`LegacyRow`; :class:`InvalidLegacyRowError` to skip it."""
        (address, encoded_from, ignore, msg_count, *dates, bounce_count) = values
        email = clean_address(address)  # refuses bytes that are not UTF-8
        if isinstance(address, bytes):  # a VARBINARY column
            address = address.decode("utf-8")
        converted: list[datetime | None] = []
        for value in dates:
            try:
                converted.append(legacy_datetime(value, self.source_tz))
            except UnreadableDateError as exc:
                self.report.unreadable_dates += 1
                self.report.note("unreadable date", f"{address!r}: {exc} stored as NULL")
                converted.append(None)
        first_email, last_email, first_bounce, *bounce_times = converted
        if isinstance(encoded_from, bytes):
            encoded_from = encoded_from.decode("utf-8", "replace")
        raw_encoded_from = "" if encoded_from is None else str(encoded_from)
        return LegacyRow(
            address=str(address).strip(),
            email=email,
            encoded_from=clean_local_part(encoded_from),
            raw_encoded_from=raw_encoded_from,
            ignore_bounces=legacy_flag(ignore),
            msg_count=legacy_count(msg_count),
            first_email=first_email,
            last_email=last_email,
            first_bounce=first_bounce,
            bounce_times=tuple(bounce_times),
            bounce_count=legacy_count(bounce_count),
        )

    def collect(self, rows: Iterable[Sequence[Any]]) -> list[LegacyRecord]:
        """All source rows, converted, validated and merged: one record per address."""
        by_email: dict[str, list[LegacyRow]] = defaultdict(list)
        report = self.report
        for values in rows:
            report.source_rows += 1
            try:
                row = self.convert(values)
            except InvalidLegacyRowError as exc:
                report.skipped += 1
                report.note("skipped", f"{str(values[0])[:80]!r}: {exc}")
            else:
                by_email[row.email].append(row)
            self.progress.update(report.source_rows)
        self.progress.update(report.source_rows, force=True)
        records: list[LegacyRecord] = []
        owners: dict[str, str] = {}
        for email in sorted(by_email):
            group = by_email.pop(email)
            record = merge_rows(email, group)
            if len(group) > 1:
                report.merged_addresses += 1
                report.merged_rows += len(group)
                dropped = "; ".join(
                    f"dropped EncodedFROM {code!r} of {address!r}"
                    for code, address in record.dropped_encoded_from
                )
                report.note(
                    "merged",
                    f"{email} <- {', '.join(map(repr, record.addresses))}; kept EncodedFROM "
                    f"{record.encoded_from!r} of {record.encoded_from_address!r}"
                    + (f"; {dropped}" if dropped else ""),
                )
            if record.encoded_from in owners:
                report.note(
                    "conflict",
                    f"{email}: EncodedFROM {record.encoded_from!r} is also that of "
                    f"{owners[record.encoded_from]} in the source, which keeps it",
                )
                report.conflicts += 1
                record.unusable_encoded_from = record.encoded_from
                record.reencode_reason = f"is taken by {owners[record.encoded_from]} in the source"
                record.encoded_from = ""
            elif record.encoded_from:
                owners[record.encoded_from] = email
            records.append(record)
        self._legacy_codes = set(owners)
        report.addresses = len(records)
        return records

    # Writing -----------------------------------------------------------------------

    def write(self, records: Sequence[LegacyRecord]) -> None:
        """Write ``records`` in batches, one transaction each."""
        done = 0
        self.progress.phase("writing", len(records))
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            plan = self._write_batch(batch)
            self._account(plan)
            done += len(batch)
            self.progress.update(done)
        self.progress.update(done, force=True)

    def _write_batch(self, batch: Sequence[LegacyRecord]) -> _Plan:
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                with transaction.atomic():
                    plan = self.plan(batch)
                    if not self.report.dry_run:
                        self._apply(plan)
                return plan
            except IntegrityError:
                # A concurrent writer (the app's backend) created one of these addresses
                # or local parts after it was planned: plan the batch again.
                if attempt == BATCH_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(self, plan: _Plan) -> None:
        if plan.create:
            EmailAddressTracker.objects.bulk_create(plan.create)
        if plan.update:
            EmailAddressTracker.objects.bulk_update(plan.update, sorted(plan.update_fields))

    def _account(self, plan: _Plan) -> None:
        report = self.report
        report.created += len(plan.create)
        report.updated += len(plan.update)
        report.unchanged += plan.unchanged
        report.conflicts += plan.conflicts
        report.reencoded += plan.reencoded
        for kind, text in plan.notes:
            report.note(kind, text)

    def plan(self, batch: Sequence[LegacyRecord]) -> _Plan:
        """What writing ``batch`` does, from the current state of the database."""
        plan = _Plan()
        existing = {
            tracker.email: tracker
            for tracker in EmailAddressTracker.objects.filter(
                email__in=[record.email for record in batch]
            )
        }
        wanted = [
            record.encoded_from
            for record in batch
            if record.email not in existing and record.encoded_from
        ]
        taken = dict(
            EmailAddressTracker.objects.filter(encoded_from__in=wanted).values_list(
                "encoded_from", "email"
            )
        )
        needs_code: list[tuple[LegacyRecord, EmailAddressTracker]] = []
        for record in batch:
            tracker = existing.get(record.email)
            if tracker is not None:
                self._plan_merge(plan, tracker, record)
                continue
            tracker = EmailAddressTracker(
                email=record.email, encoded_from=record.encoded_from, **record.values()
            )
            plan.create.append(tracker)
            if record.encoded_from in taken:
                plan.conflicts += 1
                plan.notes.append(
                    (
                        "conflict",
                        f"{record.email}: EncodedFROM {record.encoded_from!r} is already used "
                        f"by the tracker of {taken[record.encoded_from]}, which keeps it",
                    )
                )
                record.unusable_encoded_from = record.encoded_from
                record.reencode_reason = f"is taken by {taken[record.encoded_from]}"
                needs_code.append((record, tracker))
            elif not record.encoded_from:
                needs_code.append((record, tracker))
            else:
                plan.notes.append(("created", f"{record.email} ({record.encoded_from})"))
        self._assign_codes(plan, needs_code)
        return plan

    def _plan_merge(self, plan: _Plan, tracker: EmailAddressTracker, record: LegacyRecord) -> None:
        if record.encoded_from and record.encoded_from != tracker.encoded_from:
            plan.conflicts += 1
            plan.notes.append(
                (
                    "conflict",
                    f"{record.email}: already tracked with encoded_from "
                    f"{tracker.encoded_from!r}, which is kept; EncodedFROM "
                    f"{record.encoded_from!r} is not imported",
                )
            )
        changes = merge_with_existing(tracker, record)
        if not changes:
            plan.unchanged += 1
            return
        for name, value in changes.items():
            setattr(tracker, name, value)
        plan.update.append(tracker)
        plan.update_fields.update(changes)
        plan.notes.append(("updated", f"{record.email}: {', '.join(sorted(changes))}"))

    def _assign_codes(
        self, plan: _Plan, needs_code: list[tuple[LegacyRecord, EmailAddressTracker]]
    ) -> None:
        """This installation's local part for addresses whose EncodedFROM can't be used."""
        if not needs_code:
            return
        candidates = {
            record.email: encode_local_part(record.email, self.tracker_settings)
            for record, _ in needs_code
        }
        taken = set(
            EmailAddressTracker.objects.filter(
                encoded_from__in=list(candidates.values())
            ).values_list("encoded_from", flat=True)
        )
        head = f"{self.tracker_settings.verp_prefix}{self.tracker_settings.verp_delimiter}"
        for record, tracker in needs_code:
            code = candidates[record.email]
            if code in taken or code in self._legacy_codes:
                code = head + address_token(record.email, self.tracker_settings.verp_secret)
            taken.add(code)
            tracker.encoded_from = code
            plan.reencoded += 1
            plan.notes.append(
                (
                    "re-encoded",
                    f"{record.email}: EncodedFROM {record.unusable_encoded_from[:80]!r} "
                    f"{record.reencode_reason}; now {code!r}",
                )
            )


def source_timezone(name: str | None) -> tzinfo:
    """The time zone named ``name``, or Django's ``TIME_ZONE``; LegacyImportError if unknown."""
    name = name or settings.TIME_ZONE or "UTC"
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise LegacyImportError(
            f"Unknown time zone {name!r} for --source-timezone (e.g. UTC, Europe/Paris)."
        ) from None


def import_legacy_table(
    url: str,
    tracker_settings: TrackerSettings,
    *,
    table: str = DEFAULT_TABLE,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timezone_name: str | None = None,
    progress: Callable[[str], None] | None = None,
    on_connected: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the original table at ``url`` into the ``default`` database.

    Raises :class:`LegacyImportError` when the source can't be read as the original
    table (bad URL, can't connect, missing table or columns, unknown time zone).
    """
    source_url = parse_source_url(url)
    source_tz = source_timezone(timezone_name)
    if batch_size < 1:
        raise LegacyImportError("--batch-size must be at least 1.")
    report = ImportReport(source=source_url.display(), table=table, dry_run=dry_run)
    with LegacySource(source_url, table) as source:
        total = source.count()
        if on_connected is not None:
            on_connected(total)
        importer = LegacyImporter(
            tracker_settings,
            source_tz=source_tz,
            report=report,
            batch_size=batch_size,
            progress=Progress(progress, total),
        )
        return importer.run(source.rows())
