"""What staff and site code do to tracked addresses: the admin's actions as functions.

A site's own views, a support script or a management command can call these the
way the admin does::

    from bounce_tracker.core.operations import set_ignore_bounces, unsuppress

    unsuppress(EmailAddressTracker.objects.for_email(address), by=request.user,
               reason="ticket 4711")
    set_ignore_bounces(tracker, True, by=None)  # e.g. from a script: no admin log entry

Each function takes one tracker, a queryset of trackers (read as primary keys only)
or an iterable of trackers; changes only the rows whose values differ; reads and
changes them under row locks, in transactions of :data:`ROWS_PER_TRANSACTION` rows;
and returns the changed rows with their new values. When ``by`` is a user and
``django.contrib.admin`` is installed, each change is written to Django's admin log
(``LogEntry``) under that user, as the admin does; with ``by=None`` nothing is
logged. The functions don't check permissions: that is the caller's job (the admin
asks for ``bounce_tracker.toggle_ignore_bounces`` and
``bounce_tracker.unsuppress_address``).

Attaching a stored unmatched message to an address needs the classifier, which the
core doesn't import: that operation is
:func:`bounce_tracker.receiving.receive.record_unmatched_message`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.formats import date_format

from bounce_tracker.core.db import chunks
from bounce_tracker.core.text import visible_text
from bounce_tracker.models import EmailAddressTracker

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

#: Rows read, locked and changed per transaction: short locks, short ``IN`` lists.
ROWS_PER_TRANSACTION = 500

#: What :func:`unsuppress` writes: no suppression mark, no bounces counted.
UNSUPPRESSED_VALUES: dict[str, Any] = {
    "suppressed_reason": "",
    "suppressed_at": None,
    "suppressed_detail": "",
    "bounce_count": 0,
    "first_bounce": None,
    "last_bounce": None,
    "last_bounce2": None,
    "last_bounce3": None,
}

#: What the functions take: one tracker, a queryset of trackers or an iterable of them.
Trackers = EmailAddressTracker | QuerySet[EmailAddressTracker] | Iterable[EmailAddressTracker]


def set_ignore_bounces(
    trackers: Trackers, ignore: bool, *, by: AbstractBaseUser | None, reason: str = ""
) -> list[EmailAddressTracker]:
    """Turn IgnoreBounces on (``ignore=True``: always send) or off for ``trackers``.

    Rows that already have that value are left alone and not logged. The admin log
    says e.g. "Turned ignore bounces on (bulk action)." with ``reason`` in brackets.
    """
    message = f"Turned ignore bounces {'on' if ignore else 'off'}{_bracketed(reason)}."
    changed: list[EmailAddressTracker] = []
    for pks in chunks(_primary_keys(trackers), ROWS_PER_TRANSACTION):
        with transaction.atomic():
            rows = list(
                EmailAddressTracker.objects.select_for_update()
                .filter(pk__in=pks)
                .exclude(ignore_bounces=ignore)
            )
            if not rows:
                continue
            EmailAddressTracker.objects.filter(pk__in=[row.pk for row in rows]).update(
                ignore_bounces=ignore
            )
            for row in rows:
                row.ignore_bounces = ignore
            _log_changes(by, [(row, message) for row in rows])
        changed += rows
    return changed


def unsuppress(
    trackers: Trackers, *, by: AbstractBaseUser | None, reason: str = ""
) -> list[EmailAddressTracker]:
    """Clear the suppression mark and reset the bounce count and bounce times.

    Unlike :meth:`~bounce_tracker.models.EmailAddressTracker.unsuppress`, which
    clears only the mark, this also resets the counters, so that the soft-bounce
    threshold doesn't refuse the address again at the next send. Messages sent and
    their dates, IgnoreBounces and the bounce history (events) are kept. Rows are
    locked while read and reset, so the admin log says exactly what was reset (see
    :func:`unsuppress_changes`); rows with nothing to reset are left alone.
    """
    changed: list[EmailAddressTracker] = []
    for pks in chunks(_primary_keys(trackers), ROWS_PER_TRANSACTION):
        with transaction.atomic():
            rows = list(EmailAddressTracker.objects.select_for_update().filter(pk__in=pks))
            changes = [(row, unsuppress_changes(row)) for row in rows]
            changes = [(row, lines) for row, lines in changes if lines]
            if not changes:
                continue
            EmailAddressTracker.objects.filter(pk__in=[row.pk for row, _ in changes]).update(
                **UNSUPPRESSED_VALUES
            )
            log = []
            for row, lines in changes:
                for field, value in UNSUPPRESSED_VALUES.items():
                    setattr(row, field, value)
                message = f"Un-suppressed and reset counters{_bracketed(reason)}: "
                log.append((row, message + "; ".join(lines) + "."))
            _log_changes(by, log)
        changed += [row for row, _ in changes]
    return changed


def unsuppress_changes(tracker: EmailAddressTracker) -> list[str]:
    """What :func:`unsuppress` would change on ``tracker``, one line per change.

    Empty when there is nothing to reset. Mail-borne text (the suppression detail)
    has its bidirectional controls made visible.
    """
    changes = []
    if tracker.suppressed_reason:
        label = tracker.get_suppressed_reason_display()
        since = f" since {_day(tracker.suppressed_at)}" if tracker.suppressed_at else ""
        detail = f": {visible_text(tracker.suppressed_detail)}" if tracker.suppressed_detail else ""
        changes.append(f"suppression mark cleared (was: {label}{since}{detail})")
    if tracker.bounce_count:
        changes.append(f"bounce count reset from {tracker.bounce_count} to 0")
    if tracker.first_bounce or tracker.last_bounce or tracker.last_bounce2 or tracker.last_bounce3:
        changes.append(
            f"first and last bounce times cleared (first bounce {_day(tracker.first_bounce)}, "
            f"last bounce {_day(tracker.last_bounce)})"
        )
    return changes


def _primary_keys(trackers: Trackers) -> Sequence[Any]:
    if isinstance(trackers, EmailAddressTracker):
        return [trackers.pk]
    if isinstance(trackers, QuerySet):
        return list(trackers.values_list("pk", flat=True))
    return [tracker.pk for tracker in trackers]


def _bracketed(reason: str) -> str:
    return f" ({visible_text(reason)})" if reason else ""


def _day(moment: datetime | None) -> str:
    return date_format(timezone.localtime(moment), "DATE_FORMAT") if moment else "never"


def _log_changes(
    user: AbstractBaseUser | None, changes: Sequence[tuple[EmailAddressTracker, str]]
) -> None:
    """Write one admin-log CHANGE entry per (row, message), in one INSERT.

    The admin's own ``log_change`` writes the same rows one at a time; creating them
    directly works alike on every supported Django (``log_action`` is deprecated
    since 5.1 and ``log_actions`` doesn't exist before it).
    """
    if user is None or not changes or not apps.is_installed("django.contrib.admin"):
        return
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(EmailAddressTracker, for_concrete_model=False)
    LogEntry.objects.bulk_create(
        LogEntry(
            user_id=user.pk,
            content_type_id=content_type.pk,
            object_id=str(row.pk),
            object_repr=str(row)[:200],
            action_flag=CHANGE,
            change_message=message,
        )
        for row, message in changes
    )
