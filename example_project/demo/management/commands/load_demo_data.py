"""``manage.py load_demo_data``: tracker rows in every state, and a demo superuser.

Idempotent: running it again resets the demo rows to the same state (times are
relative to the current hour) and leaves every other row alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from bounce_tracker.core.addresses import normalize_email
from bounce_tracker.core.settings import get_settings
from bounce_tracker.core.verp import encode_local_part
from bounce_tracker.models import BounceEvent, EmailAddressTracker, SuppressionReason
from bounce_tracker.policy import evaluate

ADMIN_URL = "http://127.0.0.1:8000/admin/"
# Demo only: never use these credentials on a reachable server.
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"

#: Every tracker field the demo sets, with its value for "nothing happened".
BLANK: dict[str, Any] = {
    "ignore_bounces": False,
    "msg_count": 0,
    "first_email": None,
    "last_email": None,
    "first_bounce": None,
    "last_bounce": None,
    "last_bounce2": None,
    "last_bounce3": None,
    "bounce_count": 0,
    "suppressed_reason": "",
    "suppressed_at": None,
    "suppressed_detail": "",
}


def _sent(now: datetime, count: int, first_days_ago: int, last_days_ago: int) -> dict[str, Any]:
    return {
        "msg_count": count,
        "first_email": now - timedelta(days=first_days_ago),
        "last_email": now - timedelta(days=last_days_ago),
    }


def _bounced(now: datetime, *days_ago: int, total: int | None = None) -> dict[str, Any]:
    """Bounce fields for bounces ``days_ago`` (most recent first; the last three are kept)."""
    times = [now - timedelta(days=days) for days in days_ago]
    recent = [*times[:3], None, None, None]
    return {
        "first_bounce": times[-1],
        "last_bounce": recent[0],
        "last_bounce2": recent[1],
        "last_bounce3": recent[2],
        "bounce_count": total if total is not None else len(times),
    }


def demo_rows(now: datetime) -> dict[str, dict[str, Any]]:
    """Address (as written) → the tracker fields it gets; one row per interesting state."""
    return {
        # Healthy: received mail, never bounced.
        "alice@example.com": _sent(now, 42, 300, 1),
        # Healthy: one soft bounce three days ago, well under the limit.
        "Bob.Smith@Example.org": {**_sent(now, 17, 200, 1), **_bounced(now, 3)},
        # Healthy, with an internationalized domain (stored in its IDNA form).
        "dora@bücher.example": _sent(now, 5, 60, 2),
        # Never sent to and never bounced: the row the first send creates.
        "newcomer@example.net": {},
        # Suppressed at once by a hard bounce.
        "gone@example.net": {
            **_sent(now, 9, 120, 2),
            **_bounced(now, 2),
            "suppressed_reason": SuppressionReason.HARD_BOUNCE,
            "suppressed_at": now - timedelta(days=2),
            "suppressed_detail": "5.1.1 user unknown",
        },
        # Suppressed at once by a spam complaint (ARF report).
        "complainer@example.com": {
            **_sent(now, 30, 400, 5),
            "suppressed_reason": SuppressionReason.COMPLAINT,
            "suppressed_at": now - timedelta(days=4),
            "suppressed_detail": "feedback loop report (ARF) from the mailbox provider",
        },
        # Over the soft-bounce threshold: three bounces within 14 days. Not marked
        # suppressed; the policy refuses it at send time until the oldest one is
        # outside the window.
        "full-mailbox@example.org": {**_sent(now, 25, 180, 1), **_bounced(now, 1, 5, 10)},
        # Soft bounces long ago, outside the window: sendable again.
        "recovered@example.com": {
            **_sent(now, 50, 365, 1),
            **_bounced(now, 40, 50, 60, 90, total=4),
        },
        # Bounces, but support staff set "ignore bounces": always sent to.
        "vip@example.com": {
            **_sent(now, 80, 500, 1),
            **_bounced(now, 1, 2, 4),
            "ignore_bounces": True,
        },
    }


#: The history each demo address gets: (kind, status, diagnostic) for each bounce time
#: in its row (newest first), plus messages that don't count.
DIAGNOSTICS = {
    "hard": ("5.1.1", "smtp; 550 5.1.1 <{email}>: Recipient address rejected: User unknown"),
    "soft": ("4.2.2", "smtp; 452 4.2.2 <{email}>: Mailbox full, over quota"),
    "complaint": ("", "ARF feedback report (Feedback-Type: abuse) from the mailbox provider"),
    "auto_reply": ("", "Automatic reply: I am out of the office until Monday"),
    "delayed": (
        "4.4.1",
        "X-Postfix; connect to mx.example.org[192.0.2.7]:25: Connection timed out",
    ),
}
EXTRA_EVENTS = {
    "alice@example.com": [("auto_reply", 6)],
    "bob.smith@example.org": [("delayed", 4)],
    "complainer@example.com": [("complaint", 4)],
}


def demo_events(tracker: EmailAddressTracker, now: datetime) -> list[tuple[str, datetime]]:
    """(kind, when) of the demo history of one address, oldest first."""
    kind = "hard" if tracker.suppressed_reason == SuppressionReason.HARD_BOUNCE else "soft"
    times = [t for t in (tracker.last_bounce3, tracker.last_bounce2, tracker.last_bounce) if t]
    events = [(kind, when) for when in times]
    events += [
        (extra, now - timedelta(days=days)) for extra, days in EXTRA_EVENTS.get(tracker.email, [])
    ]
    return sorted(events, key=lambda event: event[1])


def demo_raw_message(email: str, kind: str, status: str, diagnostic: str) -> bytes:
    """A short stand-in for the stored raw message (the admin shows it as text)."""
    return (
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\n"
        f"Subject: demo {kind} for {email}\n\n"
        f"Final-Recipient: rfc822; {email}\nStatus: {status or '-'}\n"
        f"Diagnostic-Code: {diagnostic}\n"
    ).encode()


class Command(BaseCommand):
    help = "Fill the tracker with demo addresses in every state and create the demo superuser."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "DEBUG is off: refusing to create a superuser whose password is published. "
                "load_demo_data is for local demo databases only."
            )
        tracker_settings = get_settings()
        # Whole hours: running the command twice within an hour gives identical rows.
        now = timezone.now().replace(minute=0, second=0, microsecond=0)

        with transaction.atomic():
            trackers = []
            for written, fields in demo_rows(now).items():
                email = normalize_email(written)
                tracker, _ = EmailAddressTracker.objects.update_or_create(
                    email=email,
                    defaults={
                        **BLANK,
                        **fields,
                        "encoded_from": encode_local_part(email, tracker_settings),
                    },
                )
                trackers.append(tracker)
                self._record_history(tracker, now)
            self._create_superuser()

        width = max(len(tracker.email) for tracker in trackers)
        self.stdout.write("Demo addresses and what the policy decides for each right now:")
        for tracker in trackers:
            verdict = evaluate(tracker, tracker_settings)
            decision = "send" if verdict.send else "skip"
            reason = f"  ({verdict.reason})" if verdict.reason else ""
            self.stdout.write(f"  {tracker.email:<{width}}  {decision}{reason}")

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Admin: {ADMIN_URL}"))
        self.stdout.write(
            self.style.SUCCESS(f"Username: {DEMO_USERNAME}  Password: {DEMO_PASSWORD}  (demo only)")
        )

    def _record_history(self, tracker: EmailAddressTracker, now: datetime) -> None:
        """Bounce events matching the row's bounce times, keyed so reruns change nothing."""
        events = demo_events(tracker, now)
        for number, (kind, when) in enumerate(events):
            status, diagnostic = DIAGNOSTICS[kind]
            diagnostic = diagnostic.format(email=tracker.email)
            raw = demo_raw_message(tracker.email, kind, status, diagnostic)
            BounceEvent.objects.update_or_create(
                fingerprint=f"demo:{tracker.email}:{number}",
                defaults={
                    "tracker": tracker,
                    "kind": kind,
                    "counted": kind in ("hard", "soft"),
                    "status": status,
                    "diagnostic": diagnostic,
                    "recipient": tracker.email,
                    "reporting_mta": "mx.example.net",
                    "envelope_sender": "MAILER-DAEMON",
                    "envelope_recipient": f"{tracker.encoded_from}@bounces.example.com",
                    "received_at": when,
                    "raw_message": raw,
                    "raw_size": len(raw),
                },
            )
        if events:
            EmailAddressTracker.objects.filter(pk=tracker.pk).update(last_event_kind=events[-1][0])

    def _create_superuser(self) -> None:
        user, _ = User.objects.get_or_create(username=DEMO_USERNAME)
        user.email = "demo@example.com"
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        if not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
        user.save()
