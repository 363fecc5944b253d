"""The import: read and clean every source row, merge per address, write in batches.

:func:`import_legacy_table` is the whole run against a real source;
:class:`LegacyImporter` does the work on rows from anywhere (tests pass lists).
Progress goes to an optional callback, so the caller decides how to show it (the
command draws a bar on a terminal); nothing here writes to a terminal.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from typing import Any

from bounce_tracker.core.settings import TrackerSettings
from bounce_tracker.ops.legacy.cleaning import InvalidLegacyRowError, LegacyRow, clean_row
from bounce_tracker.ops.legacy.merging import LegacyRecord, merge_addresses
from bounce_tracker.ops.legacy.report import ImportReport
from bounce_tracker.ops.legacy.source import (
    DEFAULT_TABLE,
    LegacyImportError,
    LegacySource,
    parse_source_url,
    source_timezone,
)
from bounce_tracker.ops.legacy.writing import LegacyWriter

DEFAULT_BATCH_SIZE = 2000
#: Source rows read between two progress reports.
PROGRESS_EVERY = 1000

#: Told how far an import is: the phase (``"reading"`` source rows, then
#: ``"writing"`` addresses), how many are done, and the phase's total (None when the
#: number of source rows is not known in advance).
ImportProgress = Callable[[str, int, int | None], None]


def _no_progress(phase: str, done: int, total: int | None) -> None:
    """The default progress callback: nothing."""


class LegacyImporter:
    """Reads source rows, cleans and merges them, and writes them in batches.

    ``rows`` are tuples in ``LEGACY_COLUMNS`` order, as
    :meth:`~bounce_tracker.ops.legacy.source.LegacySource.rows` yields them. Nothing
    is written when the report is a dry run's; the counts are the same as a real run's.
    """

    def __init__(
        self,
        tracker_settings: TrackerSettings,
        *,
        source_tz: tzinfo,
        report: ImportReport,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: ImportProgress | None = None,
    ) -> None:
        self.tracker_settings = tracker_settings
        self.source_tz = source_tz
        self.report = report
        self.batch_size = batch_size
        self.progress = progress or _no_progress

    def run(self, rows: Iterable[Sequence[Any]], *, total_rows: int | None = None) -> ImportReport:
        """Import ``rows`` (``total_rows`` of them, if known); returns the report."""
        started = time.monotonic()
        records = self.collect(rows, total_rows=total_rows)
        self.write(records)
        self.report.seconds = time.monotonic() - started
        return self.report

    def collect(
        self, rows: Iterable[Sequence[Any]], *, total_rows: int | None = None
    ) -> list[LegacyRecord]:
        """All source rows, cleaned and merged: one record per address."""
        by_email: dict[str, list[LegacyRow]] = defaultdict(list)
        report = self.report
        for values in rows:
            report.source_rows += 1
            try:
                row = clean_row(values, self.source_tz)
            except InvalidLegacyRowError as exc:
                report.skipped += 1
                report.note("skipped", f"{str(values[0])[:80]!r}: {exc}")
            else:
                by_email[row.email].append(row)
                for problem in row.unreadable_dates:
                    report.unreadable_dates += 1
                    report.note("unreadable date", problem)
            if report.source_rows % PROGRESS_EVERY == 0:
                self.progress("reading", report.source_rows, total_rows)
        self.progress("reading", report.source_rows, total_rows)
        records = merge_addresses(by_email, report)
        report.addresses = len(records)
        return records

    def write(self, records: Sequence[LegacyRecord]) -> None:
        """Write ``records`` in batches, one transaction each."""
        writer = LegacyWriter(
            self.tracker_settings,
            dry_run=self.report.dry_run,
            legacy_codes={record.encoded_from for record in records if record.encoded_from},
        )
        self.progress("writing", 0, len(records))
        for start in range(0, len(records), self.batch_size):
            batch = records[start : start + self.batch_size]
            writer.write_batch(batch).add_to(self.report)
            self.progress("writing", start + len(batch), len(records))


def import_legacy_table(
    url: str,
    tracker_settings: TrackerSettings,
    *,
    table: str = DEFAULT_TABLE,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    timezone_name: str | None = None,
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Import the original table at ``url`` into the ``default`` database.

    ``timezone_name`` is the zone the source's dates are in (default: ``TIME_ZONE``).
    Raises :class:`~bounce_tracker.ops.legacy.source.LegacyImportError` when the
    source can't be read as the original table (bad URL, can't connect, missing
    table or columns, unknown time zone) or ``batch_size`` is below 1.
    """
    source_url = parse_source_url(url)
    source_tz = source_timezone(timezone_name)
    if batch_size < 1:
        raise LegacyImportError(
            f"The batch size must be at least 1, not {batch_size}.", argument="batch_size"
        )
    report = ImportReport(source=source_url.display(), table=table, dry_run=dry_run)
    with LegacySource(source_url, table) as source:
        total_rows = source.count()
        importer = LegacyImporter(
            tracker_settings,
            source_tz=source_tz,
            report=report,
            batch_size=batch_size,
            progress=progress,
        )
        return importer.run(source.rows(), total_rows=total_rows)
