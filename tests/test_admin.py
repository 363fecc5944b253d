import pytest
from django.urls import reverse

from bounce_tracker.models import BounceEvent, EmailAddressTracker, UnmatchedMessage

pytestmark = pytest.mark.django_db


@pytest.fixture
def tracker():
    tracker = EmailAddressTracker.objects.create(
        email="dead@example.org", encoded_from="bounces+abc", bounce_count=1
    )
    BounceEvent.objects.create(
        tracker=tracker,
        kind="hard",
        status="5.1.1",
        diagnostic="<script>alert(1)</script> user unknown",
        envelope_recipient="bounces+abc@b.example",
        fingerprint="f1",
    )
    UnmatchedMessage.objects.create(
        envelope_recipient="bounces+zzz@b.example",
        reason="no tracked address has this VERP local part",
        fingerprint="u1",
    )
    return tracker


def test_support_pages_load_for_staff(admin_client, tracker):
    pages = [
        reverse("admin:bounce_tracker_emailaddresstracker_changelist"),
        reverse("admin:bounce_tracker_emailaddresstracker_change", args=[tracker.pk]),
        reverse("admin:bounce_tracker_bounceevent_changelist"),
        reverse("admin:bounce_tracker_unmatchedmessage_changelist"),
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
    detail = admin_client.get(pages[1]).content
    assert b"user unknown" in detail
    assert b"<script>alert(1)</script>" not in detail
    assert b"&lt;script&gt;" in detail


def test_counters_are_read_only_but_ignore_bounces_can_be_changed(admin_client, tracker):
    url = reverse("admin:bounce_tracker_emailaddresstracker_change", args=[tracker.pk])
    response = admin_client.post(
        url,
        {
            "ignore_bounces": "on",
            "bounce_count": "0",
            "msg_count": "999",
            "bounce_events-TOTAL_FORMS": "0",
            "bounce_events-INITIAL_FORMS": "1",
            "bounce_events-MIN_NUM_FORMS": "0",
            "bounce_events-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is True
    assert tracker.bounce_count == 1
    assert tracker.msg_count == 0
