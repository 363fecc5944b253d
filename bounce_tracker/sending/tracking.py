"""The database side of sending: find or create tracker rows in bulk, count sends.

Both functions touch the database a fixed number of times per batch (one query
per :data:`~bounce_tracker.core.db.CHUNK_SIZE` addresses), never once per recipient.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from bounce_tracker.core.db import chunks, retry_deadlocks
from bounce_tracker.core.settings import TrackerSettings
from bounce_tracker.core.verp import address_token, encode_local_part
from bounce_tracker.models import EmailAddressTracker


def _fetch(addresses: Sequence[str]) -> dict[str, EmailAddressTracker]:
    found: dict[str, EmailAddressTracker] = {}
    for chunk in chunks(addresses):
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
    # Sorted, so concurrent senders take the unique-index locks in the same order.
    missing = sorted(address for address in wanted if address not in trackers)
    if missing:
        new_rows = [
            EmailAddressTracker(
                email=address, encoded_from=encode_local_part(address, tracker_settings)
            )
            for address in missing
        ]
        retry_deadlocks(
            lambda: EmailAddressTracker.objects.bulk_create(new_rows, ignore_conflicts=True)
        )
        trackers.update(_fetch(missing))
    still_missing = [address for address in missing if address not in trackers]
    if still_missing:
        # The only conflict left is on encoded_from: a readable local part already
        # taken by another address (e.g. imported from the legacy table). The token
        # form can't collide, so use it.
        head = f"{tracker_settings.verp_prefix}{tracker_settings.verp_delimiter}"
        token_rows = [
            EmailAddressTracker(
                email=address,
                encoded_from=head + address_token(address, tracker_settings.verp_secret),
            )
            for address in still_missing
        ]
        retry_deadlocks(
            lambda: EmailAddressTracker.objects.bulk_create(token_rows, ignore_conflicts=True)
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
        pks.sort()  # the same row-lock order in every concurrent sender
        for chunk in chunks(pks):
            _add_sent(list(chunk), copies, now)


def _add_sent(pks: list[int], copies: int, now: datetime) -> None:
    def update() -> int:
        return EmailAddressTracker.objects.filter(pk__in=pks).update(
            msg_count=F("msg_count") + copies,
            last_email=now,
            first_email=Coalesce(F("first_email"), Value(now, output_field=DateTimeField())),
        )

    retry_deadlocks(update)
