"""The database side of sending: find or create tracker rows in bulk, count sends.

Both functions touch the database a fixed number of times per batch (one query
per :data:`CHUNK_SIZE` addresses), never once per recipient.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence

from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from bounce_tracker.conf import TrackerSettings
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.verp import address_token, encode_local_part

#: Addresses per ``IN (...)`` lookup; well under every database's parameter limit.
CHUNK_SIZE = 2000


def _chunks(items: Sequence[str], size: int = CHUNK_SIZE) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _fetch(addresses: Sequence[str]) -> dict[str, EmailAddressTracker]:
    found: dict[str, EmailAddressTracker] = {}
    for chunk in _chunks(addresses):
        for tracker in EmailAddressTracker.objects.filter(email__in=chunk):
            found[tracker.email] = tracker
    return found


def ensure_trackers(
    addresses: Iterable[str], tracker_settings: TrackerSettings
) -> dict[str, EmailAddressTracker]:
    """The tracker rows for normalized ``addresses``, creating the missing ones.

    Safe under concurrent senders: rows are inserted with ``ignore_conflicts`` on the
    unique ``email`` column and then read back, so two processes sending to a new
    address at once end up with the same single row.
    """
    wanted = list(dict.fromkeys(addresses))
    trackers = _fetch(wanted)
    missing = [address for address in wanted if address not in trackers]
    if missing:
        EmailAddressTracker.objects.bulk_create(
            [
                EmailAddressTracker(
                    email=address, encoded_from=encode_local_part(address, tracker_settings)
                )
                for address in missing
            ],
            ignore_conflicts=True,
        )
        trackers.update(_fetch(missing))
    still_missing = [address for address in missing if address not in trackers]
    if still_missing:
        # The only conflict left is on encoded_from: a readable local part already
        # taken by another address (e.g. imported from the legacy table). The token
        # form can't collide, so use it.
        EmailAddressTracker.objects.bulk_create(
            [
                EmailAddressTracker(
                    email=address,
                    encoded_from=(
                        f"{tracker_settings.verp_prefix}{tracker_settings.verp_delimiter}"
                        + address_token(address, tracker_settings.verp_secret)
                    ),
                )
                for address in still_missing
            ],
            ignore_conflicts=True,
        )
        trackers.update(_fetch(still_missing))
    unresolved = [address for address in wanted if address not in trackers]
    if unresolved:
        raise RuntimeError(f"Could not create tracker rows for {unresolved[:5]!r}.")
    return trackers


def record_sent(trackers: dict[str, EmailAddressTracker], accepted: Counter[str]) -> None:
    """Add the accepted copies to ``msg_count`` and stamp ``first_email``/``last_email``.

    One UPDATE per distinct number of copies per address (almost always one), using
    ``msg_count + n`` in SQL so concurrent senders never lose a count.
    """
    now = timezone.now()
    by_count: defaultdict[int, list[int]] = defaultdict(list)
    for address, copies in accepted.items():
        if copies:
            by_count[copies].append(trackers[address].pk)
    for copies, pks in by_count.items():
        for start in range(0, len(pks), CHUNK_SIZE):
            EmailAddressTracker.objects.filter(pk__in=pks[start : start + CHUNK_SIZE]).update(
                msg_count=F("msg_count") + copies,
                last_email=now,
                first_email=Coalesce(F("first_email"), Value(now, output_field=DateTimeField())),
            )
