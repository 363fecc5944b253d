"""An address's policy state in words: the badge, the verdict, the policy note."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import EmailAddressTracker
from bounce_tracker.policy import AddressState, evaluate

_DEFAULT_POLICY = "bounce_tracker.policy.default_policy"


def state_badge(state: AddressState) -> SafeString:
    """The state as a badge: a text label, with a CSS class for colour."""
    return format_html('<span class="bt-state bt-state-{}">{}</span>', state.value, state.label)


def verdict_text(tracker: EmailAddressTracker, now: datetime | None = None) -> str:
    """The default rules' verdict on ``tracker`` in words, e.g. "sent to" or "not sent to
    since May 3, 2026: hard bounce (5.1.1 user unknown)"."""
    verdict = evaluate(tracker, get_settings(), now)
    if verdict.send:
        return f"sent to: {verdict.reason}" if verdict.reason else "sent to"
    return verdict.reason


def policy_note(policy: str) -> str:
    """A note under the verdict when the site's ``POLICY`` is not the default rules."""
    if policy == _DEFAULT_POLICY:
        return ""
    return f"Verdict by the default rules; this site's POLICY setting is {policy}."
