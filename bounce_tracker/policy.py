"""The suppression policy: whether a recipient is sent to, and why not.

A policy is any callable ``policy(tracker, message) -> Verdict`` named by dotted
path in ``BOUNCE_TRACKER["POLICY"]`` (optionally with a keyword-only
``tracker_settings`` argument, see
:func:`bounce_tracker.sending.settings.load_policy`). It gets the recipient's tracker row (never
``None``: rows are created before the policy runs) and the caller's original
message, and must not query the database: it runs once per recipient.

The default, :func:`default_policy`, follows the original recipe's time-based rule
on the last three bounce times, plus the suppression marks set by hard bounces and
complaints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.core.mail import EmailMessage
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format

from bounce_tracker.core.settings import TrackerSettings, get_settings
from bounce_tracker.models import EmailAddressTracker, SuppressionReason


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one recipient: send or not, and why in words."""

    send: bool
    reason: str

    @classmethod
    def allow(cls, reason: str = "") -> Verdict:
        """Send to this recipient (``reason`` is optional)."""
        return cls(send=True, reason=reason)

    @classmethod
    def suppress(cls, reason: str) -> Verdict:
        """Don't send to this recipient; ``reason`` says why, for people."""
        return cls(send=False, reason=reason)


Policy = Callable[[EmailAddressTracker, EmailMessage | None], Verdict]


def _day(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "DATE_FORMAT")


def evaluate(
    tracker: EmailAddressTracker,
    tracker_settings: TrackerSettings,
    now: datetime | None = None,
) -> Verdict:
    """The default rules, with the settings and the clock passed in (for tests and the admin).

    1. ``ignore_bounces`` always sends.
    2. An address marked suppressed (hard bounce, complaint, staff) is not sent to.
    3. An address whose last ``SOFT_BOUNCE_LIMIT`` counted bounces all fall within
       ``SOFT_BOUNCE_WINDOW_DAYS`` of now is not sent to; it is sent to again once
       the oldest of them leaves the window.
    """
    now = now or timezone.now()
    if tracker.ignore_bounces:
        return Verdict.allow("ignoring bounces (set by staff)")
    if tracker.suppressed_reason:
        since = f" since {_day(tracker.suppressed_at)}" if tracker.suppressed_at else ""
        label = tracker.get_suppressed_reason_display()
        detail = f" ({tracker.suppressed_detail})" if tracker.suppressed_detail else ""
        return Verdict.suppress(f"not sent to{since}: {label}{detail}")
    limit = tracker_settings.soft_bounce_limit
    recent = [tracker.last_bounce, tracker.last_bounce2, tracker.last_bounce3][:limit]
    window = tracker_settings.soft_bounce_window
    if all(recent) and all(now - moment <= window for moment in recent if moment):
        days = f"{window.total_seconds() / 86400:g}"
        return Verdict.suppress(
            f"not sent to: {limit} bounce{'s' if limit > 1 else ''} within {days} days, "
            f"the last on {_day(recent[0])}"  # type: ignore[arg-type]
        )
    return Verdict.allow()


def default_policy(
    tracker: EmailAddressTracker,
    message: EmailMessage | None = None,
    *,
    tracker_settings: TrackerSettings | None = None,
) -> Verdict:
    """The default rules (see :func:`evaluate`) with the backend's or the current settings."""
    return evaluate(tracker, tracker_settings or get_settings())


class AddressState(models.TextChoices):
    """What the default rules (:func:`evaluate`) make of an address, as one word for lists.

    The admin shows it as a badge and filters by it; :func:`address_state` computes it
    for one row and :func:`address_state_q` selects the rows in a state, by the same rules.
    """

    OK = "ok", "OK"
    SUPPRESSED_HARD = "hard", "suppressed: hard bounce"
    SUPPRESSED_COMPLAINT = "complaint", "suppressed: complaint"
    SUPPRESSED_MANUAL = "manual", "suppressed: by staff"
    SUPPRESSED_SOFT_THRESHOLD = "soft_threshold", "suppressed: soft threshold"
    IGNORING_BOUNCES = "ignoring", "ignoring bounces"


_STATE_OF_REASON: dict[str, AddressState] = {
    SuppressionReason.HARD_BOUNCE: AddressState.SUPPRESSED_HARD,
    SuppressionReason.COMPLAINT: AddressState.SUPPRESSED_COMPLAINT,
    SuppressionReason.MANUAL: AddressState.SUPPRESSED_MANUAL,
}

_BOUNCE_TIME_FIELDS = ("last_bounce", "last_bounce2", "last_bounce3")


def address_state(
    tracker: EmailAddressTracker,
    tracker_settings: TrackerSettings,
    now: datetime | None = None,
) -> AddressState:
    """The state of one tracker row under the default rules (no database query)."""
    if tracker.ignore_bounces:
        return AddressState.IGNORING_BOUNCES
    if tracker.suppressed_reason:
        # A reason this version doesn't know (imported, or from a newer version) still
        # suppresses; it is shown as set by staff.
        return _STATE_OF_REASON.get(tracker.suppressed_reason, AddressState.SUPPRESSED_MANUAL)
    if not evaluate(tracker, tracker_settings, now).send:
        return AddressState.SUPPRESSED_SOFT_THRESHOLD
    return AddressState.OK


def soft_threshold_q(tracker_settings: TrackerSettings, now: datetime | None = None) -> Q:
    """Rows whose last ``SOFT_BOUNCE_LIMIT`` bounces all fall within the window of ``now``.

    The bounce times shift on every bounce, so ``last_bounce >= last_bounce2 >=
    last_bounce3`` and the oldest of them decides; the others are compared too, so
    rows imported out of order are judged exactly as :func:`evaluate` judges them.
    Ignores the suppression mark and ``ignore_bounces`` (see :func:`address_state_q`).
    """
    cutoff = (now or timezone.now()) - tracker_settings.soft_bounce_window
    fields = _BOUNCE_TIME_FIELDS[: tracker_settings.soft_bounce_limit]
    return Q(**{f"{field}__gte": cutoff for field in fields})


def address_state_q(
    state: AddressState,
    tracker_settings: TrackerSettings,
    now: datetime | None = None,
) -> Q:
    """The rows :func:`address_state` puts in ``state``, as a filter."""
    if state == AddressState.IGNORING_BOUNCES:
        return Q(ignore_bounces=True)
    sending = Q(ignore_bounces=False)
    for reason, reason_state in _STATE_OF_REASON.items():
        if state == reason_state:
            if reason == SuppressionReason.MANUAL:
                known = [r for r in SuppressionReason.values if r != reason]
                return sending & ~Q(suppressed_reason="") & ~Q(suppressed_reason__in=known)
            return sending & Q(suppressed_reason=reason)
    unmarked = sending & Q(suppressed_reason="")
    if state == AddressState.SUPPRESSED_SOFT_THRESHOLD:
        return unmarked & soft_threshold_q(tracker_settings, now)
    return unmarked & ~soft_threshold_q(tracker_settings, now)
