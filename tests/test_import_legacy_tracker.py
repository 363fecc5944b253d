"""``import_legacy_tracker``: the original recipe's table into the app's trackers.

The merge rules run on every database with rows given in memory (the importer takes
the tuples the source would yield). The tests marked ``mysql`` read a real legacy
table, built by the test in a scratch database on the MariaDB server the suite uses
(``bt_legacy_src_<pid>``, dropped afterwards): 100,000 rows with zero dates,
mixed-case duplicates, odd and invalid addresses.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import time
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import COUNTER_FIELDS, BounceEvent, EmailAddressTracker
from bounce_tracker.ops.legacy import (
    ImportReport,
    LegacyImporter,
    LegacyImportError,
    import_legacy_table,
)
from bounce_tracker.ops.legacy.cleaning import InvalidLegacyRowError, clean_address, legacy_datetime
from bounce_tracker.ops.legacy.source import parse_source_url
from bounce_tracker.receiving.receive import Outcome, read_message, receive_message
from tests import messages

ZERO = "0000-00-00 00:00:00"
FIELDS = ["pk", "email", "encoded_from", "ignore_bounces", *COUNTER_FIELDS, "suppressed_reason"]


def row(
    address: str,
    encoded_from: str | None = None,
    *,
    ignore: int = 0,
    msg_count: int = 1,
    first_email: Any = ZERO,
    last_email: Any = ZERO,
    first_bounce: Any = ZERO,
    bounces: tuple[Any, Any, Any] = (ZERO, ZERO, ZERO),
    bounce_count: int = 0,
) -> tuple[Any, ...]:
    """A source row as the driver yields it (dates as text, see LegacySource)."""
    if encoded_from is None:
        user, _, domain = address.rpartition("@")
        encoded_from = f"sentto-{user}={domain}"
    return (
        address,
        encoded_from,
        ignore,
        msg_count,
        first_email,
        last_email,
        first_bounce,
        *bounces,
        bounce_count,
    )


def run_import(
    rows: list[tuple[Any, ...]],
    *,
    dry_run: bool = False,
    tz: str = "UTC",
    batch_size: int = 3,
    progress: Any = None,
) -> ImportReport:
    report = ImportReport(source="memory", table="EmailAddressTracker", dry_run=dry_run)
    importer = LegacyImporter(
        get_settings(),
        source_tz=zoneinfo.ZoneInfo(tz),
        report=report,
        batch_size=batch_size,
        progress=progress,
    )
    return importer.run(rows, total_rows=len(rows))


def snapshot() -> list[tuple[Any, ...]]:
    return list(EmailAddressTracker.objects.order_by("pk").values_list(*FIELDS))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------------------------------
# Conversion rules (no database).


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("no-at-sign.example.com", "no @"),
        ("@example.com", "no local part"),
        ("brian@", "no local part"),
        ("two words@example.com", "not one bare address"),
        ("a@b.com, c@d.com", "not one bare address"),
        ("<brian@example.com>", "not one bare address"),
        ("line\nbreak@example.com", "control character"),
        ("x" * 243 + "@example.com", "longer than 254"),
    ],
)
def test_invalid_addresses_are_refused_with_a_reason(value, reason):
    with pytest.raises(InvalidLegacyRowError, match=reason):
        clean_address(value)


def test_valid_odd_addresses_are_kept_and_folded():
    assert clean_address(" O'Brien+News@Example.COM ") == "o'brien+news@example.com"
    assert clean_address("JOSÉ@example.com") == "josé@example.com"
    assert clean_address("bob@Bücher.de") == "bob@xn--bcher-kva.de"
    assert clean_address("x" * 242 + "@example.com") == "x" * 242 + "@example.com"


def test_zero_and_partial_dates_are_never_and_the_rest_is_read_in_the_source_zone(settings):
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    for never in (None, ZERO, "0000-00-00", "2020-05-00 10:00:00", "2020-00-10", b"0000-00-00"):
        assert legacy_datetime(never, paris) is None
    summer = legacy_datetime("2024-07-01 12:00:00", paris)
    assert summer == utc(2024, 7, 1, 10)
    assert legacy_datetime(datetime(2024, 1, 1, 12), paris) == utc(2024, 1, 1, 11)
    settings.USE_TZ = False
    settings.TIME_ZONE = "UTC"
    assert legacy_datetime("2024-07-01 12:00:00", paris) == datetime(2024, 7, 1, 10)


def test_source_url_parsing():
    url = parse_source_url("mariadb://old%40user:p%3Ass@db.example.com:3307/legacy?charset=latin1")
    assert (url.user, url.password, url.host, url.port, url.database, url.charset) == (
        "old@user",
        "p:ss",
        "db.example.com",
        3307,
        "legacy",
        "latin1",
    )
    assert "p:ss" not in url.display()
    assert parse_source_url("mysql://root@127.0.0.1/x").port == 3306


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://u@h/db", "'postgres' is not mysql or mariadb"),
        ("not a url", "no scheme"),
        ("mysql://root@127.0.0.1:3306/", "names no database"),
        ("mysql://root@127.0.0.1:99999/db", "Can't read SOURCE_URL"),
        ("mysql://root@127.0.0.1/db?sslmode=1", "unknown option"),
    ],
)
def test_an_unreadable_url_is_a_command_error(url, message):
    with pytest.raises(CommandError, match=message):
        call_command("import_legacy_tracker", url)


def test_an_unknown_time_zone_is_a_command_error():
    with pytest.raises(CommandError, match="Unknown time zone 'Mars/Olympus'"):
        call_command(
            "import_legacy_tracker", "mysql://root@127.0.0.1/db", source_timezone="Mars/Olympus"
        )


@pytest.mark.parametrize(
    ("argument", "value", "option"),
    [("batch_size", 0, "--batch-size"), ("timezone_name", "Mars/Olympus", "--source-timezone")],
)
def test_library_errors_name_the_argument_and_the_command_names_its_option(argument, value, option):
    url = "mysql://root@127.0.0.1/db"
    with pytest.raises(LegacyImportError) as raised:
        import_legacy_table(url, get_settings(), **{argument: value})
    assert raised.value.argument == argument
    assert "--" not in str(raised.value)
    with pytest.raises(CommandError, match=f"^{option}: {re.escape(str(raised.value))}$"):
        call_command("import_legacy_tracker", url, option, str(value))


@pytest.mark.django_db
def test_progress_is_reported_per_phase_with_its_total():
    reports: list[tuple[str, int, int | None]] = []
    rows = [row(f"user{index}@example.com") for index in range(7)]
    rows.append(row("user0@EXAMPLE.com", "sentto-user0=example.com"))  # merged into user0

    run_import(rows, batch_size=3, progress=lambda *report: reports.append(report))

    # All 8 source rows read, then the 7 addresses written in batches of 3.
    assert reports == [
        ("reading", 8, 8),
        ("writing", 0, 7),
        ("writing", 3, 7),
        ("writing", 6, 7),
        ("writing", 7, 7),
    ]


# ---------------------------------------------------------------------------------------
# Merge rules, on every database.


@pytest.mark.django_db
def test_rows_are_imported_with_counts_nulls_and_their_encoded_from():
    report = run_import(
        [
            row(
                "Brian@Example.com",
                "sentto-Brian=Example.com",
                ignore=1,
                msg_count=42,
                first_email="2019-01-02 03:04:05",
                last_email="2023-06-07 08:09:10",
                first_bounce="2020-01-01 00:00:00",
                bounces=("2023-06-01 00:00:00", "2022-01-01 00:00:00", ZERO),
                bounce_count=2,
            ),
            row("never@example.com", msg_count=0),
        ]
    )
    brian = EmailAddressTracker.objects.get(email="brian@example.com")
    assert brian.encoded_from == "sentto-brian=example.com"
    assert brian.ignore_bounces is True
    assert (brian.msg_count, brian.bounce_count) == (42, 2)
    assert brian.first_email == utc(2019, 1, 2, 3, 4, 5)
    assert brian.last_email == utc(2023, 6, 7, 8, 9, 10)
    assert brian.first_bounce == utc(2020, 1, 1)
    assert (brian.last_bounce, brian.last_bounce2, brian.last_bounce3) == (
        utc(2023, 6, 1),
        utc(2022, 1, 1),
        None,
    )
    never = EmailAddressTracker.objects.get(email="never@example.com")
    assert never.first_email is never.last_email is never.first_bounce is None
    assert never.last_bounce is never.last_bounce2 is never.last_bounce3 is None
    assert (report.source_rows, report.created, report.updated, report.skipped) == (2, 2, 0, 0)
    assert "Imported 2 rows of table 'EmailAddressTracker'" in report.summary()


@pytest.mark.django_db
def test_a_bounce_to_an_old_readable_verp_address_is_recorded_on_the_imported_row():
    run_import(
        [
            row("brian@example.com", "sentto-brian=example.com", msg_count=10, bounce_count=1),
            row("other@example.com", "sentto-other=example.com"),
        ]
    )
    raw = messages.dsn("brian@example.com", return_path="sentto-brian=example.com")
    message = read_message(io.BytesIO(raw), 10**6)
    # The old recipe's bounce domain and a case-changing MTA: the local part still matches.
    result = receive_message(message, "MAILER-DAEMON", "SENTTO-Brian=example.com@old.example.org")
    assert result.outcome is Outcome.RECORDED
    brian = EmailAddressTracker.objects.get(email="brian@example.com")
    assert brian.bounce_count == 2
    assert brian.last_bounce is not None
    assert BounceEvent.objects.get().tracker == brian


@pytest.mark.django_db
def test_case_duplicates_are_merged_into_one_row_and_reported():
    report = run_import(
        [
            row(
                "Ann@Example.com",
                "sentto-ann-old=example.com",
                msg_count=5,
                first_email="2018-01-01 00:00:00",
                last_email="2019-01-01 00:00:00",
                first_bounce="2018-06-01 00:00:00",
                bounces=("2019-03-01 00:00:00", "2018-06-01 00:00:00", ZERO),
                bounce_count=2,
            ),
            row(
                "ann@example.com",
                "sentto-ann=example.com",
                msg_count=7,
                first_email="2018-05-01 00:00:00",
                last_email="2024-01-01 00:00:00",
                first_bounce="2019-03-01 00:00:00",
                bounces=("2024-02-01 00:00:00", "2019-03-01 00:00:00", "2019-02-01 00:00:00"),
                bounce_count=3,
            ),
            row("ANN@EXAMPLE.COM", "SENTTO-ANN=EXAMPLE.COM", ignore=1, msg_count=1),
        ]
    )
    ann = EmailAddressTracker.objects.get()
    assert ann.email == "ann@example.com"
    assert (ann.msg_count, ann.bounce_count) == (13, 5)
    assert ann.first_email == utc(2018, 1, 1)
    assert ann.last_email == utc(2024, 1, 1)
    assert ann.first_bounce == utc(2018, 6, 1)
    # The three latest distinct bounce times of all rows.
    assert (ann.last_bounce, ann.last_bounce2, ann.last_bounce3) == (
        utc(2024, 2, 1),
        utc(2019, 3, 1),
        utc(2019, 2, 1),
    )
    assert ann.ignore_bounces is True
    # Kept: the EncodedFROM of the row with the latest LastEmail.
    assert ann.encoded_from == "sentto-ann=example.com"
    assert (report.merged_addresses, report.merged_rows, report.created) == (1, 3, 1)
    [merged] = report.examples["merged"]
    assert "kept EncodedFROM 'sentto-ann=example.com' of 'ann@example.com'" in merged
    assert "dropped EncodedFROM 'sentto-ann-old=example.com' of 'Ann@Example.com'" in merged
    # The third row's value is the same once lower-cased: nothing to drop.
    assert "EXAMPLE.COM" not in merged.split("kept")[1]
    assert "3 rows differing only in letter case merged into 1 addresses" in report.summary()


@pytest.mark.django_db
def test_invalid_rows_are_skipped_and_reported_without_stopping():
    report = run_import(
        [
            row("", "sentto-x"),
            row("no-at-sign", "sentto-y"),
            row("x" * 250 + "@example.com", "sentto-z"),
            row("fine@example.com"),
        ]
    )
    assert list(EmailAddressTracker.objects.values_list("email", flat=True)) == ["fine@example.com"]
    assert report.skipped == 3
    assert any("no @" in text for text in report.examples["skipped"])
    assert "3 invalid rows skipped." in report.summary()


@pytest.mark.django_db
def test_unusable_encoded_from_values_get_this_installations_local_part():
    report = run_import(
        [
            row("empty@example.com", ""),
            row("long@example.com", "sentto-" + "l" * 70),
            row("at@example.com", "sentto-at=example.com@bounces.example.com"),
        ]
    )
    for tracker in EmailAddressTracker.objects.all():
        assert tracker.encoded_from.startswith("bounces+"), tracker
        assert len(tracker.encoded_from) <= 64
    assert report.reencoded == 3
    assert len(report.examples["re-encoded"]) == 3


@pytest.mark.django_db
def test_conflicts_keep_the_existing_encoded_from_and_merge_the_counts():
    taken = EmailAddressTracker.objects.create(
        email="owner@example.com", encoded_from="sentto-shared=example.com"
    )
    sent_since = EmailAddressTracker.objects.create(
        email="carol@example.com",
        encoded_from="bounces+k3v0token",
        msg_count=3,
        last_email=utc(2025, 1, 1),
        last_bounce=utc(2025, 1, 2),
        bounce_count=1,
    )
    report = run_import(
        [
            # EncodedFROM already used by another address's tracker.
            row("dave@example.com", "sentto-shared=example.com", msg_count=9),
            # The address is tracked already, with another encoded_from.
            row(
                "Carol@example.com",
                "sentto-carol=example.com",
                msg_count=10,
                first_email="2019-01-01 00:00:00",
                last_email="2020-01-01 00:00:00",
                bounces=("2020-01-02 00:00:00", "2019-06-01 00:00:00", ZERO),
                bounce_count=1,
            ),
            # Two source addresses sharing one EncodedFROM: the first by address keeps it.
            row("erin@example.com", "sentto-twin=example.com"),
            row("frank@example.com", "sentto-twin=example.com"),
        ]
    )
    taken.refresh_from_db()
    assert taken.encoded_from == "sentto-shared=example.com"
    dave = EmailAddressTracker.objects.get(email="dave@example.com")
    assert dave.encoded_from.startswith("bounces+")
    assert dave.msg_count == 9
    sent_since.refresh_from_db()
    assert sent_since.encoded_from == "bounces+k3v0token"
    assert sent_since.msg_count == 10  # the larger, not the sum
    assert sent_since.bounce_count == 1
    assert sent_since.first_email == utc(2019, 1, 1)
    assert sent_since.last_email == utc(2025, 1, 1)
    assert (sent_since.last_bounce, sent_since.last_bounce2, sent_since.last_bounce3) == (
        utc(2025, 1, 2),
        utc(2020, 1, 2),
        utc(2019, 6, 1),
    )
    assert EmailAddressTracker.objects.get(email="erin@example.com").encoded_from == (
        "sentto-twin=example.com"
    )
    assert EmailAddressTracker.objects.get(email="frank@example.com").encoded_from.startswith(
        "bounces+"
    )
    assert report.conflicts == 3
    conflicts = " | ".join(report.examples["conflict"])
    assert "used by the tracker of owner@example.com" in conflicts
    assert "already tracked with encoded_from 'bounces+k3v0token', which is kept" in conflicts
    assert "also that of erin@example.com in the source" in conflicts
    assert (report.created, report.updated) == (3, 1)


ROWS_FOR_RERUN = [
    row(
        "Gina@Example.com",
        msg_count=4,
        first_email="2020-01-01 10:00:00",
        last_email="2021-01-01 10:00:00",
        bounces=("2021-01-01 11:00:00", ZERO, ZERO),
        bounce_count=1,
    ),
    row("gina@example.com", "sentto-gina-2=example.com", msg_count=6, ignore=1),
    row("hal@example.com", "", msg_count=2),
    row("ivan@example.com", "sentto-shared=example.com"),
    row("jo@example.com", "sentto-shared=example.com"),
    row("bad-address", "sentto-bad"),
    row("kim@example.com", first_email="2020-13-45 99:00:00"),
]


@pytest.mark.django_db
def test_a_second_run_changes_nothing():
    EmailAddressTracker.objects.create(
        email="jo@example.com", encoded_from="bounces+jotoken", msg_count=100
    )
    first = run_import(ROWS_FOR_RERUN)
    after_first = snapshot()
    second = run_import(ROWS_FOR_RERUN)
    assert snapshot() == after_first
    assert (second.created, second.updated, second.reencoded) == (0, 0, 0)
    assert second.unchanged == first.addresses == 5
    assert second.skipped == first.skipped == 1
    assert first.unreadable_dates == 1


@pytest.mark.django_db
def test_dry_run_writes_nothing_and_counts_what_a_real_run_does():
    EmailAddressTracker.objects.create(
        email="jo@example.com", encoded_from="bounces+jotoken", msg_count=100
    )
    before = snapshot()
    dry = run_import(ROWS_FOR_RERUN, dry_run=True)
    assert snapshot() == before
    real = run_import(ROWS_FOR_RERUN)
    counts = ("created", "updated", "unchanged", "merged_rows", "skipped", "conflicts", "reencoded")
    assert [getattr(dry, name) for name in counts] == [getattr(real, name) for name in counts]
    assert dry.summary().startswith("Dry run, nothing written: would import 7 rows")
    assert "would be created" in dry.summary()


# ---------------------------------------------------------------------------------------
# A real legacy table on MariaDB.

SOURCE_DATABASE = f"bt_legacy_src_{os.getpid()}"
LEGACY_DDL = """
CREATE TABLE `{table}` (
  EmailAddress varchar(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  EncodedFROM varchar(255) NOT NULL DEFAULT '',
  IgnoreBounces tinyint(1) NOT NULL DEFAULT 0,
  MsgCount int NOT NULL DEFAULT 0,
  FirstEmail datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  LastEmail datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  FirstBounce datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  LastBounce datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  LastBounce2 datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  LastBounce3 datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  BounceCount int NOT NULL DEFAULT 0,
  PRIMARY KEY (EmailAddress)
) DEFAULT CHARSET=utf8mb4
"""
INSERT = (
    "INSERT INTO `{table}` (EmailAddress, EncodedFROM, IgnoreBounces, MsgCount, FirstEmail, "
    "LastEmail, FirstBounce, LastBounce, LastBounce2, LastBounce3, BounceCount) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
BIG_ROWS = 100_000


class LegacyServer:
    """The scratch source database, reached with MySQLdb directly."""

    def __init__(self) -> None:
        settings_dict = connection.settings_dict
        self.host = settings_dict["HOST"] or "127.0.0.1"
        self.port = int(settings_dict["PORT"] or 3306)
        self.user = settings_dict["USER"]
        self.password = settings_dict["PASSWORD"] or ""

    def connect(self, database: str | None = SOURCE_DATABASE) -> Any:
        import MySQLdb

        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
        }
        if database:
            kwargs["database"] = database
        db = MySQLdb.connect(**kwargs)
        db.autocommit(True)
        return db

    def url(self, database: str = SOURCE_DATABASE) -> str:
        from urllib.parse import quote

        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return f"mysql://{auth}@{self.host}:{self.port}/{database}"

    def create_table(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        with contextlib.closing(self.connect()) as db:
            cursor = db.cursor()
            cursor.execute("SET SESSION sql_mode = ''")  # zero dates, as the old servers allowed
            cursor.execute(f"DROP TABLE IF EXISTS `{table}`")
            cursor.execute(LEGACY_DDL.format(table=table))
            for start in range(0, len(rows), 5000):
                cursor.executemany(INSERT.format(table=table), rows[start : start + 5000])


@pytest.fixture(scope="module")
def legacy_server() -> Iterator[LegacyServer]:
    if connection.vendor != "mysql":
        pytest.skip("needs MariaDB")
    server = LegacyServer()
    with contextlib.closing(server.connect(database=None)) as db:
        cursor = db.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{SOURCE_DATABASE}`")
        cursor.execute(f"CREATE DATABASE `{SOURCE_DATABASE}` CHARACTER SET utf8mb4")
    try:
        yield server
    finally:
        with contextlib.closing(server.connect(database=None)) as db:
            db.cursor().execute(f"DROP DATABASE IF EXISTS `{SOURCE_DATABASE}`")


def big_legacy_table(size: int = BIG_ROWS) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """``size`` source rows and what importing them must give (also used by the benchmark)."""
    base = datetime(2015, 1, 1)
    rows: list[tuple[Any, ...]] = []
    odd = [
        "o'brien@example.com",
        "brian+newsletter@example.com",
        "josé.garcía@example.es",
        "用户@例子.广告",
        "x" * 242 + "@example.com",  # 254 octets: the longest valid address
        '"quoted"@example.com',
        "back`tick@example.com",
    ]
    invalid = [
        "",
        "no-at-sign",
        "@example.com",
        "trailing@",
        "two words@example.com",
        "y" * 243 + "@example.com",  # 255 octets
    ]

    def stamp(days: int) -> str:
        return (base + timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")

    merged_groups = 0
    for i in range(size - len(odd) - len(invalid)):
        if i % 50 == 49:
            # A case variant of the previous address; every other one with another
            # EncodedFROM (one of them is dropped and reported).
            previous = f"user{i - 1}@example{(i - 1) % 97}.com"
            variant = previous.upper() if i % 100 == 49 else previous.capitalize()
            user, _, domain = variant.rpartition("@")
            code = f"sentto-{user}={domain}" if i % 100 == 49 else f"old-{user}={domain}"
            rows.append(
                row(
                    variant,
                    code,
                    msg_count=1,
                    last_email=stamp(i % 3000 + 1),
                    bounces=(stamp(i % 3000 + 2), ZERO, ZERO),
                    bounce_count=1,
                )
            )
            merged_groups += 1
            continue
        zero = i % 3 == 0
        rows.append(
            row(
                f"user{i}@example{i % 97}.com",
                ignore=int(i % 7 == 0),
                msg_count=i % 1000,
                first_email=ZERO if zero else stamp(i % 3000),
                last_email=ZERO if zero else stamp(i % 3000 + 1),
                first_bounce=ZERO if i % 2 else stamp(i % 3000),
                bounces=(ZERO, ZERO, ZERO) if i % 2 else (stamp(i % 3000), ZERO, ZERO),
                bounce_count=0 if i % 2 else 1,
            )
        )
    for address in odd:
        rows.append(row(address, f"sentto-odd{len(rows)}", ignore=1, msg_count=3))
    for address in invalid:
        rows.append(row(address, f"sentto-bad{len(rows)}"))
    assert len(rows) == size
    expected = {
        "addresses": size - len(invalid) - merged_groups,
        "merged_addresses": merged_groups,
        "merged_rows": 2 * merged_groups,
        "skipped": len(invalid),
    }
    return rows, expected


@pytest.mark.mysql
@pytest.mark.django_db
def test_importing_a_100k_row_legacy_table(legacy_server, capsys):
    rows, expected = big_legacy_table()
    legacy_server.create_table("EmailAddressTracker", rows)
    url = legacy_server.url()

    # Dry run first: the report, nothing written.
    out = io.StringIO()
    call_command("import_legacy_tracker", url, dry_run=True, stdout=out, stderr=io.StringIO())
    assert EmailAddressTracker.objects.count() == 0
    assert "Dry run, nothing written: would import 100,000 rows" in out.getvalue()
    assert f"{expected['addresses']:,} would be created" in out.getvalue()

    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    call_command("import_legacy_tracker", url, stdout=out, stderr=err)
    seconds = time.monotonic() - started
    report = out.getvalue()
    assert err.getvalue() == ""  # no progress line when stderr is not a terminal
    assert EmailAddressTracker.objects.count() == expected["addresses"]
    assert f"Imported 100,000 rows of table 'EmailAddressTracker' from {url}" in report
    assert f"{expected['addresses']:,} created, 0 updated, 0 unchanged" in report
    assert (
        f"{expected['merged_rows']:,} rows differing only in letter case merged into "
        f"{expected['merged_addresses']:,} addresses"
    ) in report
    assert f"{expected['skipped']} invalid rows skipped" in report
    assert "merged: user0@example0.com" not in report
    assert (
        "kept EncodedFROM 'old-user10098=example10.com' of 'User10098@example10.com'; "
        "dropped EncodedFROM 'sentto-user10098=example10.com' of 'user10098@example10.com'"
    ) in report
    assert "skipped: 'no-at-sign': no @" in report

    # Zero dates are NULL, the others are kept.
    zero = EmailAddressTracker.objects.get(email="user3@example3.com")
    assert zero.first_email is zero.last_email is zero.last_bounce is None
    dated = EmailAddressTracker.objects.get(email="user2@example2.com")
    assert dated.first_email == utc(2015, 1, 3)
    assert dated.first_bounce == utc(2015, 1, 3)
    assert dated.ignore_bounces is False
    assert EmailAddressTracker.objects.get(email="user7@example7.com").ignore_bounces is True

    # A merged pair: counts summed, the latest EncodedFROM kept.
    pair = EmailAddressTracker.objects.get(email="user48@example48.com")
    assert (pair.msg_count, pair.bounce_count) == (48 + 1, 1 + 1)
    assert pair.encoded_from == "sentto-user48=example48.com"
    assert pair.last_bounce == utc(2015, 1, 1) + timedelta(days=49 % 3000 + 2)
    assert pair.last_bounce2 == utc(2015, 1, 1) + timedelta(days=48)

    # Odd characters arrive intact.
    for address in ("o'brien@example.com", "josé.garcía@example.es", '"quoted"@example.com'):
        assert EmailAddressTracker.objects.get(email=address).msg_count == 3
    assert EmailAddressTracker.objects.filter(email="x" * 242 + "@example.com").exists()
    assert EmailAddressTracker.objects.filter(email__startswith="用户@xn--").exists()

    # An old readable return path still reaches its row.
    raw = messages.dsn("user10@example10.com", return_path="sentto-user10=example10.com")
    result = receive_message(
        read_message(io.BytesIO(raw), 10**6),
        "MAILER-DAEMON",
        "sentto-user10=example10.com@bounces.example.com",
    )
    assert result.outcome is Outcome.RECORDED
    assert BounceEvent.objects.get().tracker.email == "user10@example10.com"
    # Running it again changes nothing, row for row (the bounce just recorded included).
    before = snapshot()
    out = io.StringIO()
    call_command("import_legacy_tracker", url, stdout=out, batch_size=5000)
    assert snapshot() == before
    assert f"0 created, 0 updated, {expected['addresses']:,} unchanged" in out.getvalue()

    rate = BIG_ROWS / seconds
    with capsys.disabled():
        print(
            f"\nimport_legacy_tracker: {BIG_ROWS:,} rows in {seconds:.1f} s = {rate:,.0f} rows/s "
            f"(MariaDB {'.'.join(map(str, connection.mysql_version))} to MariaDB, batch 2,000)"
        )


@pytest.mark.mysql
def test_a_missing_table_is_named(legacy_server):
    legacy_server.create_table("Other", [])
    with pytest.raises(CommandError) as raised:
        call_command("import_legacy_tracker", legacy_server.url(), table="Trackers")
    assert "Table 'Trackers' not found in database" in str(raised.value)
    assert "Other" in str(raised.value)
    with pytest.raises(CommandError, match="Did you mean --table Other"):
        call_command("import_legacy_tracker", legacy_server.url(), table="other")


@pytest.mark.mysql
def test_missing_columns_are_listed(legacy_server):
    with contextlib.closing(legacy_server.connect()) as db:
        cursor = db.cursor()
        cursor.execute("DROP TABLE IF EXISTS Narrow")
        cursor.execute("CREATE TABLE Narrow (EmailAddress varchar(255), MsgCount int)")
    with pytest.raises(CommandError) as raised:
        call_command("import_legacy_tracker", legacy_server.url(), table="Narrow")
    message = str(raised.value)
    assert "Table 'Narrow' doesn't look like the original EmailAddressTracker table" in message
    assert (
        "missing column(s) EncodedFROM, IgnoreBounces, FirstEmail, LastEmail, FirstBounce, "
        "LastBounce, LastBounce2, LastBounce3, BounceCount."
    ) in message


@pytest.mark.mysql
def test_connection_failures_are_command_errors(legacy_server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(CommandError, match=rf"Can't connect to mysql://.*:{closed_port}/db"):
        call_command("import_legacy_tracker", f"mysql://root:secret@127.0.0.1:{closed_port}/db")
    with pytest.raises(CommandError, match="Unknown database") as raised:
        call_command("import_legacy_tracker", legacy_server.url("bt_no_such_database"))
    assert "secret" not in str(raised.value)


@pytest.mark.mysql
@pytest.mark.django_db
def test_the_command_reads_zero_dates_and_a_source_time_zone(legacy_server):
    legacy_server.create_table(
        "Small",
        [
            row("zed@example.com", last_email="2024-07-01 12:00:00", first_email=ZERO),
            row("Zed@Example.com", "sentto-zed=example.com", msg_count=2),
        ],
    )
    out = io.StringIO()
    call_command(
        "import_legacy_tracker",
        legacy_server.url(),
        table="Small",
        source_timezone="Europe/Paris",
        stdout=out,
    )
    zed = EmailAddressTracker.objects.get()
    assert zed.first_email is None
    assert zed.last_email == utc(2024, 7, 1, 10)
    assert zed.msg_count == 3
    assert "merged: zed@example.com <- 'Zed@Example.com', 'zed@example.com'" in out.getvalue()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.mysql
@pytest.mark.django_db
def test_the_command_draws_a_bar_per_phase_on_a_terminal(legacy_server):
    legacy_server.create_table(
        "Small", [row("amy@example.com"), row("Amy@Example.com"), row("bo@example.com")]
    )
    out, err = io.StringIO(), FakeTerminal()

    call_command(
        "import_legacy_tracker", legacy_server.url(), table="Small", stdout=out, stderr=err
    )

    bars = err.getvalue()
    # Three source rows read, then two addresses written; each bar ends on its own line.
    assert re.search(r"\rreading: 100%.*\b3/3 \[", bars), bars
    assert re.search(r"\rwriting: 100%.*\b2/2 \[", bars), bars
    assert bars.endswith("\n")
    assert bars.index("reading") < bars.index("writing")
    assert "\r" not in out.getvalue()
    assert "Imported 3 rows" in out.getvalue()
