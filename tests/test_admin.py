"""The admin for support staff, through Django's test client.

Who sees and may do what (support group, plain staff, superuser), the admin log,
the un-suppress confirmation, the IgnoreBounces toggle (POST + CSRF only), constant
queries per page, escaping of hostile mail-borne text, the raw message view and
download, attaching unmatched mail exactly once, and the verdict in words.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import (
    COUNTER_FIELDS,
    BounceEvent,
    EmailAddressTracker,
    EventSource,
    SuppressionReason,
    UnmatchedMessage,
)
from bounce_tracker.policy import AddressState, address_state, address_state_q
from bounce_tracker.receiving.receive import Outcome, read_message, receive_message
from tests.messages import dsn

pytestmark = pytest.mark.django_db

NOW = timezone.now()
CHANGELIST = "admin:bounce_tracker_emailaddresstracker_changelist"
EVENTS = "admin:bounce_tracker_bounceevent_changelist"
UNMATCHED = "admin:bounce_tracker_unmatchedmessage_changelist"


# --- helpers ------------------------------------------------------------------------------


def local_part(email: str) -> str:
    return "bounces+" + hashlib.sha256(email.encode()).hexdigest()[:26]


def make_tracker(email: str, **fields) -> EmailAddressTracker:
    return EmailAddressTracker.objects.create(email=email, encoded_from=local_part(email), **fields)


def bounces(*days: float) -> dict[str, datetime]:
    times = [NOW - timedelta(days=d) for d in days]
    fields = dict(zip(["last_bounce", "last_bounce2", "last_bounce3"], times, strict=False))
    return {**fields, "first_bounce": times[-1], "bounce_count": len(times)}


def make_event(tracker: EmailAddressTracker, n: int = 0, **fields) -> BounceEvent:
    values = {
        "kind": "hard",
        "counted": True,
        "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 user unknown",
        "reporting_mta": "dns; mx.example.net",
        "envelope_recipient": f"{tracker.encoded_from}@bounces.example.com",
        "fingerprint": f"fp-{tracker.pk}-{n}",
        "received_at": NOW - timedelta(minutes=n),
        "raw_message": b"Subject: bounce\r\n\r\nUser unknown\r\n",
        "raw_size": 34,
        **fields,
    }
    return BounceEvent.objects.create(tracker=tracker, **values)


def change_url(tracker: EmailAddressTracker) -> str:
    return reverse("admin:bounce_tracker_emailaddresstracker_change", args=[tracker.pk])


def toggle_url(tracker: EmailAddressTracker) -> str:
    return reverse("admin:bounce_tracker_emailaddresstracker_ignore_bounces", args=[tracker.pk])


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def log_messages(obj) -> list[str]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(type(obj)), object_id=str(obj.pk)
    ).order_by("pk")
    return [entry.get_change_message() for entry in entries]


def result_emails(response) -> list[str]:
    return [tracker.email for tracker in response.context["cl"].result_list]


def action_names(response) -> set[str]:
    action_form = response.context.get("action_form")
    if action_form is None:
        return set()
    return {name for name, _ in action_form.fields["action"].choices if name}


# --- users ----------------------------------------------------------------------------------


@pytest.fixture
def support_user(django_user_model):
    user = django_user_model.objects.create_user("support", is_staff=True)
    user.groups.add(Group.objects.get(name="Bounce support"))
    return user


@pytest.fixture
def plain_staff(django_user_model):
    """Staff who may look at everything but change nothing."""
    user = django_user_model.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="bounce_tracker", codename__startswith="view_"
        )
    )
    return user


@pytest.fixture
def support(support_user) -> Client:
    return logged_in(support_user)


@pytest.fixture
def viewer(plain_staff) -> Client:
    return logged_in(plain_staff)


@pytest.fixture
def tracker():
    tracker = make_tracker(
        "dead@example.org",
        suppressed_reason=SuppressionReason.HARD_BOUNCE,
        suppressed_at=datetime(2026, 5, 3, 12, 0, tzinfo=UTC),
        suppressed_detail="5.1.1 user unknown",
        msg_count=7,
        **bounces(1, 2),
    )
    make_event(tracker, diagnostic="<script>alert(1)</script> user unknown")
    UnmatchedMessage.objects.create(
        envelope_recipient="bounces+zzz@b.example",
        reason="no tracked address has this VERP local part",
        fingerprint="u1",
    )
    return tracker


# --- pages and permissions ----------------------------------------------------------------


def test_support_pages_load_for_staff(admin_client, tracker):
    pages = [
        reverse(CHANGELIST),
        change_url(tracker),
        reverse(EVENTS),
        reverse(UNMATCHED),
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
    detail = admin_client.get(pages[1]).content
    assert b"user unknown" in detail
    assert b"<script>alert(1)</script>" not in detail
    assert b"&lt;script&gt;" in detail


def test_every_page_loads_for_the_support_group(support, tracker):
    event = tracker.bounce_events.get()
    unmatched = UnmatchedMessage.objects.get()
    pages = [
        reverse(CHANGELIST),
        change_url(tracker),
        reverse(EVENTS),
        reverse("admin:bounce_tracker_bounceevent_change", args=[event.pk]),
        reverse(UNMATCHED),
        reverse("admin:bounce_tracker_unmatchedmessage_change", args=[unmatched.pk]),
        reverse("admin:bounce_tracker_bounceevent_raw", args=[event.pk]),
        reverse("admin:bounce_tracker_unmatchedmessage_raw", args=[unmatched.pk]),
        reverse("admin:bounce_tracker_dashboard"),
    ]
    for page in pages:
        assert support.get(page).status_code == 200, page


INLINE_MANAGEMENT = {
    "bounce_events-TOTAL_FORMS": "0",
    "bounce_events-INITIAL_FORMS": "1",
    "bounce_events-MIN_NUM_FORMS": "0",
    "bounce_events-MAX_NUM_FORMS": "0",
}


def test_counters_are_read_only_but_ignore_bounces_can_be_changed(admin_client, tracker):
    url = change_url(tracker)
    response = admin_client.post(
        url, {"ignore_bounces": "on", "bounce_count": "0", "msg_count": "999", **INLINE_MANAGEMENT}
    )
    assert response.status_code == 302, response.content[:2000]
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is True
    assert tracker.bounce_count == 2
    assert tracker.msg_count == 7
    assert log_messages(tracker) == ["Changed Ignore bounces."]


def test_saving_the_form_writes_only_ignore_bounces_not_the_counters_it_read(admin_client, tracker):
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.post(
            change_url(tracker), {"ignore_bounces": "on", **INLINE_MANAGEMENT}
        )
    assert response.status_code == 302
    updates = [
        q["sql"]
        for q in queries
        if q["sql"].startswith("UPDATE") and "emailaddresstracker" in q["sql"]
    ]
    assert len(updates) == 1
    assert "ignore_bounces" in updates[0]
    for field in COUNTER_FIELDS:
        assert field not in updates[0]


def test_ignore_bounces_is_read_only_in_the_form_without_the_toggle_permission(
    django_user_model, tracker
):
    editor = django_user_model.objects.create_user("editor", is_staff=True)
    editor.user_permissions.add(
        Permission.objects.get(codename="change_emailaddresstracker"),
        Permission.objects.get(codename="view_bounceevent"),
    )
    response = logged_in(editor).get(change_url(tracker))
    assert response.status_code == 200
    assert "ignore_bounces" not in response.context["adminform"].form.fields
    logged_in(editor).post(change_url(tracker), {"ignore_bounces": "on", **INLINE_MANAGEMENT})
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is False


def test_the_support_group_sees_a_read_only_form_and_the_toggle_button(support, tracker):
    response = support.get(change_url(tracker))
    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    assert response.context["bt_toggle"]["value"] == "on"
    assert f'action="{toggle_url(tracker)}"'.encode() in response.content


def test_nobody_can_add_addresses_by_hand(admin_client, support):
    add = reverse("admin:bounce_tracker_emailaddresstracker_add")
    assert admin_client.get(add).status_code == 403
    assert support.get(add).status_code == 403


def test_the_support_group_cannot_delete_addresses_or_events_but_superusers_can(
    admin_client, support, tracker
):
    event = tracker.bounce_events.get()
    unmatched = UnmatchedMessage.objects.get()
    deletes = [
        reverse("admin:bounce_tracker_emailaddresstracker_delete", args=[tracker.pk]),
        reverse("admin:bounce_tracker_bounceevent_delete", args=[event.pk]),
        reverse("admin:bounce_tracker_unmatchedmessage_delete", args=[unmatched.pk]),
    ]
    for url in deletes:
        assert support.get(url).status_code == 403, url
        assert support.post(url, {"post": "yes"}).status_code == 403, url
        assert admin_client.get(url).status_code == 200, url
    assert "delete_selected" not in action_names(support.get(reverse(CHANGELIST)))
    assert "delete_selected" not in action_names(support.get(reverse(UNMATCHED)))
    assert "delete_selected" in action_names(admin_client.get(reverse(UNMATCHED)))
    assert EmailAddressTracker.objects.count() == 1
    assert BounceEvent.objects.count() == 1


def test_staff_without_the_permissions_see_neither_toggles_nor_actions(viewer, support, tracker):
    for_viewer = viewer.get(reverse(CHANGELIST))
    assert for_viewer.status_code == 200
    assert b"formaction=" not in for_viewer.content
    assert action_names(for_viewer) == set()
    assert b'class="bt-toggle-form"' not in viewer.get(change_url(tracker)).content
    assert action_names(viewer.get(reverse(UNMATCHED))) == set()

    for_support = support.get(reverse(CHANGELIST))
    assert b"formaction=" in for_support.content
    assert action_names(for_support) == {
        "ignore_bounces_selected",
        "stop_ignoring_bounces_selected",
        "unsuppress_selected",
    }
    assert action_names(support.get(reverse(UNMATCHED))) == {"attach_to_address"}


def test_toggle_permission_alone_gives_the_toggles_but_not_unsuppress(django_user_model, tracker):
    user = django_user_model.objects.create_user("toggler", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_emailaddresstracker"),
        Permission.objects.get(codename="toggle_ignore_bounces"),
    )
    response = logged_in(user).get(reverse(CHANGELIST))
    assert action_names(response) == {"ignore_bounces_selected", "stop_ignoring_bounces_selected"}
    assert b"formaction=" in response.content


# --- the IgnoreBounces toggle -------------------------------------------------------------


def test_the_list_toggle_posts_to_the_toggle_url_and_returns_to_the_same_list(support, tracker):
    list_url = reverse(CHANGELIST) + "?q=dead&state=hard"
    response = support.get(list_url)
    button = re.search(rb'formaction="([^"]+)" name="ignore_bounces" value="on"', response.content)
    assert button is not None
    formaction = button.group(1).decode().replace("&amp;", "&")
    assert formaction.startswith(toggle_url(tracker))
    assert parse_qs(urlsplit(formaction).query)["next"] == [list_url]

    redirect = support.post(formaction, {"ignore_bounces": "on"})
    assert redirect.status_code == 302
    assert redirect["Location"] == list_url
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is True
    assert log_messages(tracker) == ["Turned ignore bounces on (one click)."]

    support.post(toggle_url(tracker), {"ignore_bounces": "off", "next": list_url})
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is False
    assert log_messages(tracker)[-1] == "Turned ignore bounces off (one click)."


def test_the_toggle_sets_the_value_it_was_given_so_a_double_click_changes_it_once(support, tracker):
    for _ in range(2):
        support.post(toggle_url(tracker), {"ignore_bounces": "on"})
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is True
    assert log_messages(tracker) == ["Turned ignore bounces on (one click)."]


def test_get_to_the_toggle_url_changes_nothing_and_is_refused(support, admin_client, tracker):
    for client in (support, admin_client):
        response = client.get(toggle_url(tracker) + "?ignore_bounces=on")
        assert response.status_code == 405
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is False
    assert log_messages(tracker) == []


def test_the_toggle_needs_a_csrf_token(support_user, tracker):
    client = Client(enforce_csrf_checks=True)
    client.force_login(support_user)
    response = client.post(toggle_url(tracker), {"ignore_bounces": "on"})
    assert response.status_code == 403
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is False

    page = client.get(change_url(tracker))
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
    response = client.post(
        toggle_url(tracker), {"ignore_bounces": "on", "csrfmiddlewaretoken": token.decode()}
    )
    assert response.status_code == 302
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is True


def test_staff_without_the_permission_cannot_toggle_by_posting(viewer, tracker):
    assert viewer.post(toggle_url(tracker), {"ignore_bounces": "on"}).status_code == 403
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is False


def test_the_toggle_refuses_a_foreign_next_url(support, tracker):
    response = support.post(
        toggle_url(tracker), {"ignore_bounces": "on", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse(CHANGELIST)


def test_the_detail_page_toggle_returns_to_the_detail_page(support, tracker):
    page = support.get(change_url(tracker))
    assert page.context["bt_toggle"]["next"] == change_url(tracker)
    response = support.post(
        toggle_url(tracker), {"ignore_bounces": "on", "next": page.context["bt_toggle"]["next"]}
    )
    assert response["Location"] == change_url(tracker)
    assert support.get(change_url(tracker)).context["bt_toggle"]["label"] == "Stop ignoring"


# --- bulk actions -----------------------------------------------------------------------------


def post_action(client, action, trackers, **extra):
    data = {"action": action, "_selected_action": [t.pk for t in trackers], **extra}
    return client.post(reverse(CHANGELIST), data)


def test_bulk_ignore_and_stop_ignoring_log_each_address_that_changed(support):
    trackers = [make_tracker(f"user{i}@example.com") for i in range(3)]
    trackers[0].ignore_bounces = True
    trackers[0].save()
    response = post_action(support, "ignore_bounces_selected", trackers, index="0")
    assert response.status_code == 302
    assert EmailAddressTracker.objects.filter(ignore_bounces=True).count() == 3
    assert log_messages(trackers[0]) == []
    assert log_messages(trackers[1]) == ["Turned ignore bounces on (bulk action)."]

    post_action(support, "stop_ignoring_bounces_selected", trackers[:2], index="0")
    assert list(
        EmailAddressTracker.objects.filter(ignore_bounces=True).values_list("email", flat=True)
    ) == ["user2@example.com"]
    assert log_messages(trackers[0]) == ["Turned ignore bounces off (bulk action)."]
    entry = LogEntry.objects.latest("pk")
    assert entry.action_flag == CHANGE
    assert entry.user.username == "support"


def test_bulk_actions_are_refused_to_staff_without_the_permission(viewer):
    tracker = make_tracker("someone@example.com", **bounces(1))
    post_action(viewer, "ignore_bounces_selected", [tracker], index="0")
    post_action(viewer, "unsuppress_selected", [tracker], index="0", post="yes")
    tracker.refresh_from_db()
    assert tracker.ignore_bounces is False
    assert tracker.bounce_count == 1


def test_unsuppress_asks_for_confirmation_showing_what_will_change(support, tracker):
    healthy = make_tracker("fine@example.com")
    response = post_action(support, "unsuppress_selected", [tracker, healthy], index="0")
    assert response.status_code == 200
    page = response.content.decode()
    assert "dead@example.org" in page
    assert "fine@example.com" in page
    assert "suppressed: hard bounce" in page
    assert "suppression mark cleared (was: hard bounce since May 3, 2026: 5.1.1 user unknown)" in (
        page
    )
    assert "bounce count reset from 2 to 0" in page
    assert "first and last bounce times cleared" in page
    assert "nothing to reset" in page
    assert 'name="post" value="yes"' in page
    tracker.refresh_from_db()
    assert tracker.suppressed_reason == "hard"
    assert tracker.bounce_count == 2
    assert log_messages(tracker) == []


def test_unsuppress_acts_on_the_confirmation_post_and_logs_the_old_values(support, tracker):
    response = post_action(support, "unsuppress_selected", [tracker], post="yes")
    assert response.status_code == 302
    tracker.refresh_from_db()
    assert tracker.suppressed_reason == ""
    assert tracker.suppressed_at is None
    assert tracker.suppressed_detail == ""
    assert tracker.bounce_count == 0
    assert tracker.first_bounce is tracker.last_bounce is None
    assert tracker.last_bounce2 is tracker.last_bounce3 is None
    assert tracker.msg_count == 7
    assert tracker.bounce_events.count() == 1  # the history is kept
    [message] = log_messages(tracker)
    assert message.startswith("Un-suppressed and reset counters: suppression mark cleared")
    assert "bounce count reset from 2 to 0" in message
    assert address_state(tracker, get_settings()) == AddressState.OK


def test_unsuppress_is_not_offered_without_its_permission(django_user_model, tracker):
    user = django_user_model.objects.create_user("toggler", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_emailaddresstracker"),
        Permission.objects.get(codename="toggle_ignore_bounces"),
    )
    client = logged_in(user)
    post_action(client, "unsuppress_selected", [tracker], post="yes")
    tracker.refresh_from_db()
    assert tracker.suppressed_reason == "hard"


# --- the list: states, filters, search, queries -------------------------------------------


@pytest.fixture
def states():
    """One address per state, plus near misses of the soft threshold (limit 3, 14 days)."""
    return {
        "ok@example.com": make_tracker("ok@example.com"),
        "two-soft@example.com": make_tracker("two-soft@example.com", **bounces(1, 2)),
        "old-soft@example.com": make_tracker("old-soft@example.com", **bounces(1, 2, 20)),
        "hard@example.com": make_tracker("hard@example.com", suppressed_reason="hard"),
        "complaint@example.com": make_tracker(
            "complaint@example.com", suppressed_reason="complaint"
        ),
        "manual@example.com": make_tracker("manual@example.com", suppressed_reason="manual"),
        "soft@example.com": make_tracker("soft@example.com", **bounces(1, 2, 3)),
        "ignoring@example.com": make_tracker(
            "ignoring@example.com", ignore_bounces=True, suppressed_reason="hard"
        ),
    }


EXPECTED_STATES = {
    AddressState.OK: {"ok@example.com", "two-soft@example.com", "old-soft@example.com"},
    AddressState.SUPPRESSED_HARD: {"hard@example.com"},
    AddressState.SUPPRESSED_COMPLAINT: {"complaint@example.com"},
    AddressState.SUPPRESSED_MANUAL: {"manual@example.com"},
    AddressState.SUPPRESSED_SOFT_THRESHOLD: {"soft@example.com"},
    AddressState.IGNORING_BOUNCES: {"ignoring@example.com"},
}


@pytest.mark.parametrize("state", list(AddressState))
def test_the_state_filter_selects_exactly_the_rows_the_badge_puts_in_that_state(
    admin_client, states, state
):
    response = admin_client.get(reverse(CHANGELIST), {"state": state.value})
    assert set(result_emails(response)) == EXPECTED_STATES[state]
    tracker_settings = get_settings()
    for email in EXPECTED_STATES[state]:
        assert address_state(states[email], tracker_settings) == state
    in_state = EmailAddressTracker.objects.filter(address_state_q(state, tracker_settings))
    assert set(in_state.values_list("email", flat=True)) == EXPECTED_STATES[state]


@pytest.mark.parametrize(("limit", "expected"), [(1, 3), (2, 3), (3, 1)])
def test_the_soft_threshold_filter_follows_the_limit_setting(settings, states, limit, expected):
    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "SOFT_BOUNCE_LIMIT": limit}
    tracker_settings = get_settings()
    q = address_state_q(AddressState.SUPPRESSED_SOFT_THRESHOLD, tracker_settings)
    rows = EmailAddressTracker.objects.filter(q)
    assert rows.count() == expected
    for row in EmailAddressTracker.objects.all():
        in_filter = rows.filter(pk=row.pk).exists()
        assert in_filter == (
            address_state(row, tracker_settings) == AddressState.SUPPRESSED_SOFT_THRESHOLD
        )


def test_the_list_shows_a_state_badge_readable_without_colour(admin_client, states):
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    for state in AddressState:
        assert f'<span class="bt-state bt-state-{state.value}">{state.label}</span>' in page


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("today", {"today@example.com"}),
        ("7d", {"today@example.com", "week@example.com"}),
        ("30d", {"today@example.com", "week@example.com", "month@example.com"}),
        ("never", {"never@example.com"}),
    ],
)
def test_the_last_bounce_filter(admin_client, choice, expected):
    make_tracker("today@example.com", last_bounce=timezone.now())
    make_tracker("week@example.com", last_bounce=NOW - timedelta(days=6, hours=1))
    make_tracker("month@example.com", last_bounce=NOW - timedelta(days=29))
    make_tracker("older@example.com", last_bounce=NOW - timedelta(days=90))
    make_tracker("never@example.com")
    response = admin_client.get(reverse(CHANGELIST), {"bounced": choice})
    assert set(result_emails(response)) == expected


def test_the_kind_and_ignore_bounces_filters(admin_client):
    make_tracker("replied@example.com", last_event_kind="auto_reply")
    make_tracker("hard@example.com", last_event_kind="hard", ignore_bounces=True)
    by_kind = admin_client.get(reverse(CHANGELIST), {"last_event_kind__exact": "auto_reply"})
    assert result_emails(by_kind) == ["replied@example.com"]
    ignoring = admin_client.get(reverse(CHANGELIST), {"ignore_bounces__exact": "1"})
    assert result_emails(ignoring) == ["hard@example.com"]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("DEAD@Example", ["dead@example.org"]),
        ("ead@exa", ["dead@example.org"]),
        ("EXAMPLE.ORG", ["dead@example.org"]),
        ("bücher", ["dora@xn--bcher-kva.example"]),
        ("nobody", []),
    ],
)
def test_search_by_part_of_the_address_in_any_letter_case(admin_client, tracker, term, expected):
    make_tracker("dora@xn--bcher-kva.example")
    response = admin_client.get(reverse(CHANGELIST), {"q": term})
    assert result_emails(response) == expected


def test_search_by_verp_local_part_or_whole_bounce_address(admin_client, tracker):
    make_tracker("other@example.org")
    token = tracker.encoded_from.split("+")[1]
    for term in (token[:10].upper(), tracker.encoded_from, f"{tracker.encoded_from}@B.Example"):
        response = admin_client.get(reverse(CHANGELIST), {"q": term})
        assert result_emails(response) == ["dead@example.org"], term


def seed(count: int) -> None:
    kinds = ["hard", "soft", "auto_reply", "delivered", ""]
    EmailAddressTracker.objects.bulk_create(
        EmailAddressTracker(
            email=f"user{i:05d}@example.com",
            encoded_from=local_part(f"user{i:05d}@example.com"),
            ignore_bounces=i % 17 == 0,
            suppressed_reason=["", "", "hard", "complaint"][i % 4],
            last_event_kind=kinds[i % 5],
            msg_count=i,
            **(bounces(1, 2, 3) if i % 3 == 0 else {}),
        )
        for i in range(count)
    )


def count_queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "params",
    [{}, {"q": "user0"}, {"state": "soft_threshold"}, {"bounced": "7d", "o": "4"}],
    ids=["plain", "search", "state", "last-bounce-sorted"],
)
def test_queries_per_list_page_do_not_grow_with_the_rows(admin_client, support, params):
    url = reverse(CHANGELIST)
    seed(30)
    small = [count_queries(client, url, params) for client in (admin_client, support)]
    EmailAddressTracker.objects.all().delete()
    seed(300)
    large = [count_queries(client, url, params) for client in (admin_client, support)]
    assert small == large
    assert max(large) <= 8  # session, user, permissions, one count, one page of rows


def test_queries_of_the_events_and_unmatched_lists_do_not_grow_with_the_rows(admin_client):
    trackers = [make_tracker(f"user{i}@example.com") for i in range(10)]

    def add_rows(start, count):
        for n in range(start, start + count):
            make_event(trackers[n % 10], n)
            UnmatchedMessage.objects.create(
                envelope_recipient=f"bounces+x{n}@b.example", reason="unknown", fingerprint=f"{n}"
            )

    add_rows(0, 5)
    small = [count_queries(admin_client, reverse(name)) for name in (EVENTS, UNMATCHED)]
    add_rows(5, 120)
    large = [count_queries(admin_client, reverse(name)) for name in (EVENTS, UNMATCHED)]
    assert small == large


def test_the_list_has_a_dashboard_link(admin_client):
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    dashboard = reverse("admin:bounce_tracker_dashboard")
    assert f'<a href="{dashboard}">Bounce dashboard</a>' in page
    assert admin_client.get(dashboard).status_code == 200


# --- the detail page ----------------------------------------------------------------------


def test_the_detail_page_states_the_verdict_in_words(admin_client, tracker):
    response = admin_client.get(change_url(tracker))
    assert response.context["bt_verdict"] == (
        "not sent to since May 3, 2026: hard bounce (5.1.1 user unknown)"
    )
    assert b"not sent to since May 3, 2026: hard bounce (5.1.1 user unknown)" in response.content

    healthy = make_tracker("fine@example.com")
    assert admin_client.get(change_url(healthy)).context["bt_verdict"] == "sent to"
    soft = make_tracker("soft@example.com", **bounces(1, 2, 3))
    assert (
        admin_client.get(change_url(soft))
        .context["bt_verdict"]
        .startswith("not sent to: 3 bounces within 14 days")
    )


def test_the_history_is_newest_first_and_capped_with_a_link_to_the_rest(admin_client):
    tracker = make_tracker("busy@example.com")
    for n in range(55):
        make_event(tracker, n, diagnostic=f"diagnostic number {n}")
    response = admin_client.get(change_url(tracker))
    [inline] = response.context["inline_admin_formsets"]
    shown = list(inline.formset.get_queryset())
    assert len(shown) == 50
    assert shown[0].diagnostic == "diagnostic number 0"  # received most recently
    assert [e.received_at for e in shown] == sorted((e.received_at for e in shown), reverse=True)
    page = response.content.decode()
    assert "5 older events not shown" in page
    assert f"{reverse(EVENTS)}?tracker__id__exact={tracker.pk}" in page
    assert "diagnostic number 49" in page
    assert "diagnostic number 50" not in page

    full = admin_client.get(reverse(EVENTS), {"tracker__id__exact": tracker.pk})
    assert full.context["cl"].result_count == 55


def test_a_short_history_has_no_link_to_more(admin_client, tracker):
    page = admin_client.get(change_url(tracker)).content.decode()
    assert "older event" not in page


# --- hostile data -------------------------------------------------------------------------

LONG_LINE = "x" * 10_000
HOSTILE = {
    "script": ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    "javascript-link": (
        '<a href="javascript:alert(1)">click</a>',
        "&lt;a href=&quot;javascript:alert(1)&quot;&gt;click&lt;/a&gt;",
    ),
    "entities": ("&lt;b&gt;bold&lt;/b&gt; &amp; &#60;i&#62;", "&amp;lt;b&amp;gt;bold&amp;lt;/b"),
    "rtl-override": ("user\u202egro.elpmaxe", "user[U+202E]gro.elpmaxe"),
}
FORBIDDEN = [b"<script>alert", b'href="javascript:', b"<b>bold", b"<i>", "\u202e".encode()]


@pytest.fixture
def hostile():
    """Rows whose mail-borne fields all carry every payload."""
    payload = " ".join(raw for raw, _ in HOSTILE.values())
    tracker = make_tracker(
        f"{payload}@evil.example"[:254].replace(" ", ""),
        suppressed_reason="hard",
        suppressed_detail=payload[:255],
    )
    make_event(
        tracker,
        diagnostic=f"{payload} {LONG_LINE}",
        reporting_mta=payload,
        recipient=payload[:254],
        envelope_sender=payload[:254],
        raw_message=f"Subject: {payload}\r\n\r\n{payload}\r\n{LONG_LINE}\r\n".encode(),
    )
    UnmatchedMessage.objects.create(
        envelope_recipient=f"{payload}@b.example"[:254],
        envelope_sender=payload[:254],
        reason=f"readable VERP address for {payload}"[:255],
        diagnostic=f"{payload} {LONG_LINE}",
        fingerprint="hostile",
        raw_message=f"Subject: {payload}\r\n\r\n{LONG_LINE}\r\n".encode(),
    )
    return tracker


def hostile_pages(tracker):
    event = tracker.bounce_events.get()
    unmatched = UnmatchedMessage.objects.get()
    return {
        "address list": reverse(CHANGELIST),
        "address list search": reverse(CHANGELIST) + "?q=%3Cscript%3E",
        "address page": change_url(tracker),
        "event list": reverse(EVENTS),
        "event page": reverse("admin:bounce_tracker_bounceevent_change", args=[event.pk]),
        "event raw": reverse("admin:bounce_tracker_bounceevent_raw", args=[event.pk]),
        "unmatched list": reverse(UNMATCHED),
        "unmatched page": reverse(
            "admin:bounce_tracker_unmatchedmessage_change", args=[unmatched.pk]
        ),
        "unmatched raw": reverse("admin:bounce_tracker_unmatchedmessage_raw", args=[unmatched.pk]),
    }


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_is_shown_as_text_on_every_page(admin_client, hostile, name):
    _, escaped = HOSTILE[name]
    for page, url in hostile_pages(hostile).items():
        content = admin_client.get(url).content
        # The address list shows only the address: the payloads without their spaces.
        expected = escaped.replace(" ", "") if page.startswith("address list") else escaped
        assert expected.encode() in content, page
        for forbidden in FORBIDDEN:
            assert forbidden not in content, (page, forbidden)


def test_long_lines_wrap_instead_of_widening_the_page(admin_client, hostile):
    pages = hostile_pages(hostile)
    detail = admin_client.get(pages["event page"]).content.decode()
    assert LONG_LINE in detail  # the detail page shows the whole diagnostic
    assert "overflow-wrap: anywhere" in detail
    listing = admin_client.get(pages["event list"]).content.decode()
    assert LONG_LINE not in listing  # lists show a preview
    raw = admin_client.get(pages["event raw"]).content.decode()
    assert re.search(r'<pre class="bt-raw">[^<]*' + LONG_LINE, raw)
    assert "white-space: pre-wrap" in raw


def test_confirmation_and_attach_pages_escape_hostile_text(admin_client, hostile):
    confirm = post_action(admin_client, "unsuppress_selected", [hostile], index="0").content
    unmatched = UnmatchedMessage.objects.get()
    attach = admin_client.post(
        reverse(UNMATCHED),
        {"action": "attach_to_address", "_selected_action": [unmatched.pk], "index": "0"},
    ).content
    for content in (confirm, attach):
        assert b"&lt;script&gt;" in content
        for forbidden in FORBIDDEN:
            assert forbidden not in content


# --- raw messages -------------------------------------------------------------------------


def test_the_raw_message_is_shown_as_escaped_text_decoded_with_replacement(admin_client, tracker):
    event = make_event(
        tracker, 1, raw_message=b"Subject: caf\xc3\xa9 \xff\r\n\r\n<html><b>hi</b></html>\r\n"
    )
    response = admin_client.get(reverse("admin:bounce_tracker_bounceevent_raw", args=[event.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Subject: café \ufffd" in page
    assert "&lt;html&gt;&lt;b&gt;hi&lt;/b&gt;&lt;/html&gt;" in page
    assert "<b>hi</b>" not in page
    download = reverse("admin:bounce_tracker_bounceevent_raw_download", args=[event.pk])
    assert f'href="{download}"' in page


@pytest.mark.parametrize("model", ["bounceevent", "unmatchedmessage"])
def test_the_download_serves_the_raw_bytes_as_an_attachment(admin_client, tracker, model):
    raw = b"Subject: x\r\n\r\n<script>alert(1)</script>\xff\r\n"
    if model == "bounceevent":
        obj = make_event(tracker, 1, raw_message=raw)
    else:
        obj = UnmatchedMessage.objects.create(
            envelope_recipient="bounces+q@b.example", reason="r", fingerprint="u2", raw_message=raw
        )
    response = admin_client.get(
        reverse(f"admin:bounce_tracker_{model}_raw_download", args=[obj.pk])
    )
    assert response.status_code == 200
    assert response.content == raw
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["X-Content-Type-Options"] == "nosniff"


def test_raw_messages_need_the_view_permission(django_user_model, tracker):
    event = tracker.bounce_events.get()
    user = django_user_model.objects.create_user("trackers-only", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_emailaddresstracker"))
    client = logged_in(user)
    for name in ("raw", "raw_download"):
        url = reverse(f"admin:bounce_tracker_bounceevent_{name}", args=[event.pk])
        assert client.get(url).status_code == 403
    assert Client().get(url).status_code == 302  # to the login page
    missing = reverse("admin:bounce_tracker_bounceevent_raw", args=[999999])
    assert logged_in(django_user_model.objects.get(username="trackers-only")).get(
        missing
    ).status_code in (403, 404)


def test_the_history_shows_where_each_event_came_from_and_filters_by_source(admin_client):
    tracker = make_tracker("multi@example.org")
    for n, source in enumerate(["pipe", "lmtp", "smtp", "esp", "mailbox"]):
        make_event(tracker, n, source=source)
    page = admin_client.get(change_url(tracker)).content.decode()
    for label in [
        "Postfix pipe",
        "LMTP receiver",
        "refused at send time",
        "ESP event",
        "bounce mailbox",
    ]:
        assert label in page
    changelist = reverse("admin:bounce_tracker_bounceevent_changelist")
    filtered = admin_client.get(changelist, {"source__exact": "esp"})
    assert [event.source for event in filtered.context["cl"].result_list] == ["esp"]


def test_the_history_links_each_event_to_its_raw_message(admin_client, tracker):
    event = tracker.bounce_events.get()
    page = admin_client.get(change_url(tracker)).content.decode()
    assert reverse("admin:bounce_tracker_bounceevent_raw", args=[event.pk]) in page
    assert reverse("admin:bounce_tracker_bounceevent_raw_download", args=[event.pk]) in page


# --- unmatched mail -----------------------------------------------------------------------


def unmatched_from(message: bytes, recipient: str = "bounces+lost@bounces.example.com"):
    incoming = read_message(io.BytesIO(message), max_bytes=1024 * 1024)
    result = receive_message(incoming, "", recipient)
    assert result.outcome == Outcome.UNMATCHED
    return result.unmatched


def attach(client, unmatched, address):
    return client.post(
        reverse(UNMATCHED),
        {
            "action": "attach_to_address",
            "_selected_action": [m.pk for m in unmatched],
            "post": "yes",
            "address": address,
        },
    )


def test_attach_asks_for_the_address_first_and_changes_nothing_yet(support):
    lost = unmatched_from(dsn("Someone@Example.org"))
    response = support.post(
        reverse(UNMATCHED), {"action": "attach_to_address", "_selected_action": [lost.pk]}
    )
    assert response.status_code == 200
    assert b'name="address"' in response.content
    assert b"bounces+lost@bounces.example.com" in response.content
    assert UnmatchedMessage.objects.count() == 1


def test_attach_refuses_an_address_that_is_not_tracked(support):
    lost = unmatched_from(dsn())
    response = attach(support, [lost], "stranger@example.org")
    assert response.status_code == 200
    assert b"No tracked address" in response.content
    assert UnmatchedMessage.objects.count() == 1
    assert BounceEvent.objects.count() == 0


def test_attach_records_the_stored_message_for_the_address_and_logs_it(support):
    tracker = make_tracker("dead@example.org")
    lost = unmatched_from(dsn())
    response = attach(support, [lost], "DEAD@example.org")
    assert response.status_code == 302
    assert not UnmatchedMessage.objects.exists()
    event = BounceEvent.objects.get()
    assert event.tracker == tracker
    assert event.kind == "hard"
    assert event.status == "5.1.1"
    assert event.counted
    assert event.source == EventSource.ADMIN
    assert event.envelope_recipient == "bounces+lost@bounces.example.com"
    assert bytes(event.raw_message) == bytes(lost.raw_message)
    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert tracker.suppressed_reason == "hard"
    assert tracker.last_event_kind == "hard"
    [message] = log_messages(tracker)
    assert message.startswith("Attached unmatched message to bounces+lost@bounces.example.com")
    assert f"recorded as hard bounce 5.1.1, bounce event #{event.pk}" in message
    deletion = LogEntry.objects.get(
        content_type=ContentType.objects.get_for_model(UnmatchedMessage)
    )
    assert deletion.action_flag == DELETION
    assert deletion.object_id == str(lost.pk)


def test_attach_refuses_a_message_whose_raw_bytes_retention_removed(support):
    tracker = make_tracker("dead@example.org")
    lost = unmatched_from(dsn())
    UnmatchedMessage.objects.filter(pk=lost.pk).update(raw_message=b"", raw_truncated=True)
    response = attach(support, [lost], "dead@example.org")
    assert response.status_code == 302
    [notice] = get_messages(response.wsgi_request)
    assert "removed by retention" in str(notice)
    assert UnmatchedMessage.objects.filter(pk=lost.pk).exists()
    assert not BounceEvent.objects.exists()
    tracker.refresh_from_db()
    assert tracker.bounce_count == 0


def test_attach_refuses_an_esp_event(support):
    make_tracker("dead@example.org")
    lost = unmatched_from(dsn())
    UnmatchedMessage.objects.filter(pk=lost.pk).update(source="esp", raw_message=b"{}")
    response = attach(support, [lost], "dead@example.org")
    [notice] = get_messages(response.wsgi_request)
    assert "only mail can be classified again" in str(notice)
    assert UnmatchedMessage.objects.filter(pk=lost.pk).exists()
    assert not BounceEvent.objects.exists()


def test_attaching_the_same_message_again_or_a_redelivery_counts_once(support):
    tracker = make_tracker("dead@example.org")
    message = dsn()
    first = unmatched_from(message)
    stale_copy = UnmatchedMessage.objects.get(pk=first.pk)
    attach(support, [first], "dead@example.org")

    # The same message delivered again to the same unknown address, then attached again.
    redelivered = unmatched_from(message)
    response = attach(support, [redelivered], "dead@example.org")
    assert response.status_code == 302
    # A second attach of a row already handled (a stale page) finds nothing to do either.
    attach(support, [stale_copy], "dead@example.org")

    tracker.refresh_from_db()
    assert tracker.bounce_count == 1
    assert BounceEvent.objects.count() == 1
    assert not UnmatchedMessage.objects.exists()
    assert len(log_messages(tracker)) == 1


def test_attach_is_refused_to_staff_without_the_permission(viewer):
    make_tracker("dead@example.org")
    lost = unmatched_from(dsn())
    attach(viewer, [lost], "dead@example.org")
    assert UnmatchedMessage.objects.count() == 1
    assert BounceEvent.objects.count() == 0


def test_unmatched_mail_filters_and_search(admin_client):
    unmatched_from(dsn(), "bounces+first@bounces.example.com")
    UnmatchedMessage.objects.create(
        envelope_recipient="bounces+second@bounces.example.com",
        reason="unknown",
        kind="auto_reply",
        fingerprint="u-auto",
    )
    url = reverse(UNMATCHED)
    by_kind = admin_client.get(url, {"kind__exact": "auto_reply"}).context["cl"].result_list
    assert [m.envelope_recipient for m in by_kind] == ["bounces+second@bounces.example.com"]
    found = admin_client.get(url, {"q": "FIRST"}).context["cl"].result_list
    assert [m.envelope_recipient for m in found] == ["bounces+first@bounces.example.com"]
    midnight = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = admin_client.get(url, {"received_at__gte": str(midnight)}).context["cl"].result_list
    assert len(today) == 2


def test_bounce_event_list_filters_and_search(admin_client, tracker):
    make_event(tracker, 1, kind="auto_reply", counted=False, status="", diagnostic="Out of office")
    url = reverse(EVENTS)
    auto = admin_client.get(url, {"kind__exact": "auto_reply"}).context["cl"].result_list
    assert [e.diagnostic for e in auto] == ["Out of office"]
    counted = admin_client.get(url, {"counted__exact": "1"}).context["cl"].result_list
    assert [e.kind for e in counted] == ["hard"]
    assert len(admin_client.get(url, {"q": "DEAD@example"}).context["cl"].result_list) == 2
    assert len(admin_client.get(url, {"q": "OFFICE"}).context["cl"].result_list) == 1
    assert len(admin_client.get(url, {"q": "5.1"}).context["cl"].result_list) == 1
