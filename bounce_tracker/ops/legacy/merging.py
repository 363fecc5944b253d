"""Merging: the rows of one address into one record, and a record into an existing tracker.

Rules 2, 4 (within the source) and 5 of :mod:`bounce_tracker.ops.legacy`. No database
access here: :mod:`~bounce_tracker.ops.legacy.writing` decides against the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bounce_tracker.models import COUNTER_FIELDS, EmailAddressTracker
from bounce_tracker.ops.legacy.cleaning import MAX_COUNT, LegacyRow
from bounce_tracker.ops.legacy.report import ImportReport

#: The tracker fields an import sets or merges (``encoded_from`` aside).
MERGED_FIELDS = ("ignore_bounces", *COUNTER_FIELDS)


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
        return {name: getattr(self, name) for name in MERGED_FIELDS}


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


def merge_rows(email: str, rows: Sequence[LegacyRow]) -> LegacyRecord:
    """One record for the rows of one address (see rule 2 in the package docstring)."""

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


def merge_addresses(
    by_email: dict[str, list[LegacyRow]], report: ImportReport
) -> list[LegacyRecord]:
    """One record per address, in address order, merges and source conflicts reported.

    Empties ``by_email`` as it goes (a million rows and their records would not
    both fit in memory comfortably). Two addresses with the same ``EncodedFROM``: the
    first by address keeps it, the other's record is left without one (to be
    re-encoded when written).
    """
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
    return records


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
