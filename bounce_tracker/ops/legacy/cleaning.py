"""One source row, cleaned: the address checked, dates, flags and counts converted.

Rule 1 of :mod:`bounce_tracker.ops.legacy`: ``EmailAddress`` is stripped and must be
one bare address (or the row is skipped with :class:`InvalidLegacyRowError`); zero
dates become None; NULL or negative counts become 0; ``EncodedFROM`` is kept
lower-cased when it can serve as a local part. No database access here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from django.conf import settings
from django.utils import timezone

from bounce_tracker.core.addresses import (
    MAX_ADDRESS_OCTETS,
    InvalidAddressError,
    has_line_break,
    normalize_email,
)
from bounce_tracker.core.settings import MAX_LOCAL_PART_OCTETS

#: The largest count every supported database stores in a PositiveIntegerField.
MAX_COUNT = 2_147_483_647

_TRUE_TEXT = frozenset({"1", "y", "yes", "t", "true", "on"})
#: Control characters, including every line break Python's email package breaks at.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
#: What a single bare address never contains (unicode whitespace included).
_NOT_BARE_RE = re.compile(r"[\s<>,]")
#: What a stored VERP local part never contains.
_BAD_LOCAL_PART_RE = re.compile(r"[\x00-\x1f\x7f\s@]")


class InvalidLegacyRowError(ValueError):
    """A source row that can't be imported; the message says why."""


class UnreadableDateError(ValueError):
    """A date that is neither a zero date nor a valid date and time."""


@dataclass(slots=True)
class LegacyRow:
    """One source row, converted; ``address`` is ``EmailAddress`` as written.

    ``unreadable_dates`` describes the dates that could be read neither as a date nor
    as a zero date (they are None here), for the report.
    """

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
    unreadable_dates: tuple[str, ...] = ()


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


def clean_row(values: Sequence[Any], source_tz: tzinfo) -> LegacyRow:
    """One source row (columns in ``LEGACY_COLUMNS`` order) as a :class:`LegacyRow`.

    Raises :class:`InvalidLegacyRowError` when the row must be skipped. A date that
    can't be read is stored as None and described in ``unreadable_dates``.
    """
    (address, encoded_from, ignore, msg_count, *dates, bounce_count) = values
    email = clean_address(address)  # refuses bytes that are not UTF-8
    if isinstance(address, bytes):  # a VARBINARY column
        address = address.decode("utf-8")
    converted: list[datetime | None] = []
    unreadable: list[str] = []
    for value in dates:
        try:
            converted.append(legacy_datetime(value, source_tz))
        except UnreadableDateError as exc:
            unreadable.append(f"{address!r}: {exc} stored as NULL")
            converted.append(None)
    first_email, last_email, first_bounce, *bounce_times = converted
    if isinstance(encoded_from, bytes):
        encoded_from = encoded_from.decode("utf-8", "replace")
    return LegacyRow(
        address=str(address).strip(),
        email=email,
        encoded_from=clean_local_part(encoded_from),
        raw_encoded_from="" if encoded_from is None else str(encoded_from),
        ignore_bounces=legacy_flag(ignore),
        msg_count=legacy_count(msg_count),
        first_email=first_email,
        last_email=last_email,
        first_bounce=first_bounce,
        bounce_times=tuple(bounce_times),
        bounce_count=legacy_count(bounce_count),
        unreadable_dates=tuple(unreadable),
    )
