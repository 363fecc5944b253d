from datetime import timedelta

import pytest
from django.utils import timezone

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import EmailAddressTracker, SuppressionReason
from bounce_tracker.policy import default_policy, evaluate

NOW = timezone.now()


def row(**fields):
    return EmailAddressTracker(email="a@example.com", encoded_from="bounces+a", **fields)


def days_ago(*days):
    times = [NOW - timedelta(days=d) for d in days]
    return dict(zip(["last_bounce", "last_bounce2", "last_bounce3"], times, strict=False))


def test_an_address_that_never_bounced_is_sent_to():
    assert evaluate(row(), get_settings(), NOW).send


@pytest.mark.parametrize(
    "reason", [SuppressionReason.HARD_BOUNCE, SuppressionReason.COMPLAINT, SuppressionReason.MANUAL]
)
def test_a_suppressed_address_is_not_sent_to_and_the_verdict_says_why_and_since_when(reason):
    verdict = evaluate(
        row(
            suppressed_reason=reason,
            suppressed_at=NOW - timedelta(days=3),
            suppressed_detail="5.1.1 user unknown",
        ),
        get_settings(),
        NOW,
    )
    assert not verdict.send
    assert str(reason.label) in verdict.reason
    assert "5.1.1 user unknown" in verdict.reason
    assert "since" in verdict.reason


def test_ignore_bounces_always_sends():
    verdict = evaluate(
        row(ignore_bounces=True, suppressed_reason="hard", **days_ago(1, 2, 3)), get_settings(), NOW
    )
    assert verdict.send


def test_three_bounces_within_the_window_suppress():
    verdict = evaluate(row(**days_ago(1, 5, 13)), get_settings(), NOW)
    assert not verdict.send
    assert "3 bounces within 14 days" in verdict.reason


def test_the_address_recovers_when_the_oldest_bounce_leaves_the_window():
    assert evaluate(row(**days_ago(1, 5, 15)), get_settings(), NOW).send


def test_fewer_bounces_than_the_limit_do_not_suppress():
    assert evaluate(row(**days_ago(1, 2)), get_settings(), NOW).send


@pytest.mark.parametrize(
    ("limit", "bounces", "sends"),
    [
        (1, (2,), False),
        (1, (20,), True),
        (2, (2, 3), False),
        (2, (2, 30), True),
    ],
)
def test_the_limit_and_the_window_are_settings(limit, bounces, sends):
    tracker_settings = get_settings({"SOFT_BOUNCE_LIMIT": limit, "SOFT_BOUNCE_WINDOW_DAYS": 7})
    assert evaluate(row(**days_ago(*bounces)), tracker_settings, NOW).send is sends


def test_default_policy_reads_the_current_settings(settings):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "SOFT_BOUNCE_LIMIT": 1}
    assert not default_policy(row(**days_ago(1)), None).send
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "SOFT_BOUNCE_LIMIT": 2}
    assert default_policy(row(**days_ago(1)), None).send
