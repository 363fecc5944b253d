"""The bounce dashboard: per-day counts by kind, totals, top lists, the SVG chart, access."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bounce_tracker.admin import charts
from bounce_tracker.admin.dashboard import (
    KIND_ORDER,
    TopEntry,
    daily_counts_by_kind,
    dashboard_context,
    dashboard_view,
    period_bounds,
    suppression_totals,
    top_recipient_domains,
    top_reporting_mtas,
)
from bounce_tracker.models import BounceEvent, EmailAddressTracker

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>"
#: The kind column holds 16 characters; this is the longest hostile value that fits.
HOSTILE_KIND = "<script>alert(1)"

_serial = itertools.count()


def make_tracker(email: str, **fields) -> EmailAddressTracker:
    return EmailAddressTracker.objects.create(
        email=email, encoded_from=f"bounces+t{next(_serial)}", **fields
    )


def make_event(tracker, kind, received_at, **fields) -> BounceEvent:
    return BounceEvent.objects.create(
        tracker=tracker,
        kind=kind,
        received_at=received_at,
        envelope_recipient=f"{tracker.encoded_from}@bounces.example.com",
        fingerprint=f"fp-{next(_serial)}",
        **fields,
    )


def local(day, hour=12, minute=0):
    """An aware datetime at ``hour:minute`` on ``day`` in the current time zone."""
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def render(request):
    response = dashboard_view(request)
    response.render()
    assert response.status_code == 200
    return response


def superuser_request(rf, admin_user, query=""):
    request = rf.get(f"/admin/bounce_tracker/emailaddresstracker/dashboard/{query}")
    request.user = admin_user
    return request


def chart_svg(content: bytes) -> ET.Element:
    """The chart's <svg> element out of the page, parsed as XML (fails if malformed)."""
    match = re.search(
        rb'<svg xmlns="http://www.w3.org/2000/svg" id="bounce-chart".*?</svg>', content, re.S
    )
    assert match, "no chart on the page"
    return ET.fromstring(match.group(0))


def database_converts_time_zones() -> bool:
    """False on MySQL/MariaDB without time zone tables (CONVERT_TZ then gives NULL)."""
    if connection.vendor != "mysql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT CONVERT_TZ('2024-01-01 00:00:00', 'UTC', 'Pacific/Auckland')")
        return cursor.fetchone()[0] is not None


@pytest.fixture
def now():
    """Noon today, local time: events earlier and later today fall on the same day."""
    return local(timezone.localdate())


@pytest.fixture
def tracker():
    return make_tracker("someone@example.org")


# Per-day counts ------------------------------------------------------------------


def test_daily_counts_put_each_event_on_its_day_and_kind(tracker, now):
    today = timezone.localdate(now)
    make_event(tracker, "hard", local(today, 0, 0))
    make_event(tracker, "hard", local(today, 23, 59))
    make_event(tracker, "soft", local(today, 8))
    make_event(tracker, "soft", local(today - timedelta(days=3), 23, 59))
    make_event(tracker, "complaint", local(today - timedelta(days=2), 0, 0))
    make_event(tracker, "auto_reply", local(today - timedelta(days=29), 0, 0))  # first day
    make_event(tracker, "hard", local(today - timedelta(days=30), 23, 59))  # before the period
    make_event(tracker, "hard", local(today + timedelta(days=1), 0, 0))  # after the period

    counts = daily_counts_by_kind(30, now)

    assert counts.days[0] == today - timedelta(days=29)
    assert counts.days[-1] == today
    by_kind = {kind.kind: kind.per_day for kind in counts.kinds}
    assert by_kind["hard"][-1] == 2
    assert by_kind["soft"][-1] == 1
    assert by_kind["soft"][-4] == 1
    assert by_kind["complaint"][-3] == 1
    assert by_kind["auto_reply"][0] == 1
    assert sum(by_kind["hard"]) == 2
    assert counts.total == 6
    assert counts.undated == 0


@pytest.mark.parametrize("days", [30, 90])
def test_days_without_events_are_zero_and_every_day_is_listed(tracker, now, days):
    make_event(tracker, "hard", now)

    counts = daily_counts_by_kind(days, now)

    assert len(counts.days) == days
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(counts.days))
    assert [kind.kind for kind in counts.kinds] == [kind.value for kind in KIND_ORDER]
    assert all(len(kind.per_day) == days for kind in counts.kinds)
    assert sum(map(sum, (kind.per_day for kind in counts.kinds))) == 1
    assert len(counts.rows()) == days


def test_days_follow_the_current_time_zone(tracker):
    if not database_converts_time_zones():
        pytest.skip("MariaDB/MySQL without time zone tables (see the warning test)")
    with timezone.override("Pacific/Auckland"):
        today = timezone.localdate()
        # Half past midnight in Auckland is still the day before in UTC.
        make_event(tracker, "hard", local(today - timedelta(days=2), 0, 30))
        counts = daily_counts_by_kind(30)
    hard = next(kind for kind in counts.kinds if kind.kind == "hard")
    assert hard.per_day[-3] == 1
    assert counts.undated == 0


def test_page_warns_when_the_database_cannot_place_events_on_days(rf, admin_user, tracker):
    if database_converts_time_zones():
        pytest.skip("this database converts time zones; the warning is for MySQL without tables")
    with timezone.override("Pacific/Auckland"):
        make_event(tracker, "hard", timezone.now())
        response = render(superuser_request(rf, admin_user))
    assert response.context_data["counts"].undated == 1
    assert b"mysql_tzinfo_to_sql" in response.content


def test_kinds_the_database_holds_but_this_version_does_not_know_are_kept(tracker, now):
    make_event(tracker, "bounce_v2", now)

    counts = daily_counts_by_kind(30, now)

    assert counts.kinds[-1].kind == "bounce_v2"
    assert counts.kinds[-1].total == 1


# Totals ---------------------------------------------------------------------------


def test_suppression_totals_count_marked_and_soft_threshold_addresses_once(settings, now):
    recent = [now - timedelta(days=d) for d in (1, 2, 3)]
    old_third = [now - timedelta(days=1), now - timedelta(days=2), now - timedelta(days=20)]
    bounces = dict(zip(("last_bounce", "last_bounce2", "last_bounce3"), recent, strict=True))
    make_tracker("hard@example.org", suppressed_reason="hard")
    make_tracker("complaint@example.org", suppressed_reason="complaint")
    make_tracker("marked-and-recent@example.org", suppressed_reason="hard", **bounces)
    make_tracker("ignored@example.org", suppressed_reason="hard", ignore_bounces=True)
    make_tracker("soft@example.org", **bounces)
    make_tracker("soft-ignored@example.org", ignore_bounces=True, **bounces)
    make_tracker(
        "third-too-old@example.org",
        **dict(zip(("last_bounce", "last_bounce2", "last_bounce3"), old_third, strict=True)),
    )
    make_tracker("fine@example.org")

    totals = suppression_totals(now)
    assert (totals.marked, totals.soft_threshold, totals.total) == (3, 1, 4)

    settings.BOUNCE_TRACKER = {**settings.BOUNCE_TRACKER, "SOFT_BOUNCE_LIMIT": 2}
    assert suppression_totals(now).soft_threshold == 2


def test_bounces_this_week_count_hard_and_soft_of_the_last_seven_days(tracker, now):
    today = timezone.localdate(now)
    make_event(tracker, "hard", now)
    make_event(tracker, "soft", local(today - timedelta(days=6), 0, 0))
    make_event(tracker, "soft", local(today - timedelta(days=7), 23, 59))  # eighth day back
    make_event(tracker, "delayed", now)
    make_event(tracker, "complaint", now)

    context = dashboard_context(30, now)

    assert context["recent_bounces"] == 2
    assert context["counts"].total == 5


# Top lists ------------------------------------------------------------------------


def test_top_recipient_domains_count_hard_and_soft_bounces_by_domain(tracker, now):
    for _ in range(3):
        make_event(tracker, "hard", now, recipient="a@Big.Example")
    make_event(tracker, "soft", now, recipient="b@mid.example")
    make_event(tracker, "soft", now, recipient="c@mid.example")
    make_event(tracker, "delayed", now, recipient="d@delayed.example")  # not a bounce
    make_event(tracker, "hard", now - timedelta(days=40), recipient="e@old.example")
    # No recipient named in the report: the tracked address's domain counts.
    make_event(tracker, "hard", now)
    _, start, end = period_bounds(30, now)

    assert top_recipient_domains(start, end) == [
        TopEntry("big.example", 3),
        TopEntry("mid.example", 2),
        TopEntry("example.org", 1),
    ]


def test_top_lists_show_at_most_ten_entries(tracker, now):
    for number in range(12):
        make_event(
            tracker, "hard", now, recipient=f"x@d{number:02}.example", reporting_mta=f"mx{number}"
        )
    _, start, end = period_bounds(30, now)

    domains = top_recipient_domains(start, end)
    assert [entry.name for entry in domains] == [f"d{number:02}.example" for number in range(10)]
    assert len(top_reporting_mtas(start, end)) == 10


def test_top_reporting_mtas_count_bounces_by_host(tracker, now):
    make_event(tracker, "hard", now, reporting_mta="MX1.example.net")
    make_event(tracker, "soft", now, reporting_mta="mx1.example.net")
    make_event(tracker, "soft", now, reporting_mta="mx2.example.net")
    make_event(tracker, "soft", now, reporting_mta="")
    make_event(tracker, "auto_reply", now, reporting_mta="mx3.example.net")
    _, start, end = period_bounds(30, now)

    assert top_reporting_mtas(start, end) == [
        TopEntry("mx1.example.net", 2),
        TopEntry("mx2.example.net", 1),
    ]


# The view -------------------------------------------------------------------------


def test_view_needs_the_permission_to_view_bounce_events(rf, django_user_model):
    staff = django_user_model.objects.create_user("support", password="x", is_staff=True)
    request = superuser_request(rf, staff)
    with pytest.raises(PermissionDenied):
        dashboard_view(request)

    staff.user_permissions.add(Permission.objects.get(codename="view_bounceevent"))
    staff = django_user_model.objects.get(pk=staff.pk)  # drop the permission cache
    request.user = staff
    assert render(request).status_code == 200


@pytest.mark.parametrize(
    ("query", "days"),
    [("", 30), ("?days=30", 30), ("?days=90", 90), ("?days=7", 30), ("?days=abc", 30)],
)
def test_days_parameter_accepts_30_or_90_and_defaults_to_30(rf, admin_user, query, days):
    response = render(superuser_request(rf, admin_user, query))

    assert response.context_data["days"] == days
    assert len(chart_svg(response.content).findall(f"{SVG}g[@class='bounce-chart-bar']")) == days


def test_page_shows_totals_top_lists_links_and_a_data_table(rf, admin_user, tracker, now):
    make_event(tracker, "hard", now, recipient="a@big.example", reporting_mta="mx.big.example")
    make_tracker("gone@example.org", suppressed_reason="hard")

    content = render(superuser_request(rf, admin_user)).content.decode()

    assert "Top bouncing recipient domains" in content
    assert "big.example" in content
    assert "mx.big.example" in content
    changelist = reverse("admin:bounce_tracker_emailaddresstracker_changelist")
    assert f'href="{changelist}"' in content
    assert f'href="{changelist}?q=%40big.example"' in content
    assert 'href="?days=90"' in content
    assert '<strong aria-current="page">30 days</strong>' in content
    details = re.search(r"<details>.*?</details>", content, re.S)
    assert details
    assert details.group(0).count('<th scope="row">') == 30
    assert re.search(r'id="bt-card-suppressed".*?bt-card-figure">1<', content, re.S)


def test_admin_url_serves_the_dashboard(admin_client, tracker, now):
    url = reverse("admin:bounce_tracker_dashboard")
    make_event(tracker, "hard", now)

    response = admin_client.get(url)

    assert response.status_code == 200
    assert chart_svg(response.content).get("role") == "img"


def test_query_count_does_not_grow_with_the_data(rf, admin_user, now):
    trackers = [make_tracker(f"user{number}@d{number % 7}.example") for number in range(20)]
    kinds = [kind.value for kind in KIND_ORDER]

    def add_events(count):
        BounceEvent.objects.bulk_create(
            BounceEvent(
                tracker=trackers[number % len(trackers)],
                kind=kinds[number % len(kinds)],
                received_at=now - timedelta(days=number % 95, minutes=number),
                recipient=f"r{number}@r{number % 13}.example",
                reporting_mta=f"mx{number % 11}.example.net",
                envelope_recipient="b@bounces.example.com",
                fingerprint=f"bulk-{next(_serial)}",
            )
            for number in range(count)
        )

    def queries_for_page():
        request = superuser_request(rf, admin_user, "?days=90")
        with CaptureQueriesContext(connection) as captured:
            render(request)
        return len(captured.captured_queries)

    add_events(5)
    few = queries_for_page()
    add_events(495)
    many = queries_for_page()

    assert few == many
    # One query per figure: days, two suppression counts, kept for review, two top lists.
    assert many == 6


# The chart ------------------------------------------------------------------------


def test_chart_is_well_formed_accessible_svg(rf, admin_user, tracker, now):
    make_event(tracker, "hard", now)
    make_event(tracker, "hard", now)
    make_event(tracker, "soft", now)

    svg = chart_svg(render(superuser_request(rf, admin_user)).content)

    assert svg.get("role") == "img"
    title = svg.find(f"{SVG}title")
    desc = svg.find(f"{SVG}desc")
    assert title is not None
    assert desc is not None
    assert svg.get("aria-labelledby") == title.get("id")
    assert svg.get("aria-describedby") == desc.get("id")
    assert "2 hard bounce, 1 soft bounce" in (desc.text or "")
    today = timezone.localdate(now)
    today = f"{today.day} {today:%b}"
    bar_titles = [t.text for t in svg.iter(f"{SVG}title")][1:]
    assert f"{today}: 2 hard bounce, 1 soft bounce" in bar_titles
    legend = [t.text for t in svg.find(f"{SVG}g[@class='bounce-chart-legend']").iter(f"{SVG}text")]
    assert legend[:2] == ["hard bounce (2)", "soft bounce (1)"]
    assert any(t.text == "Messages" for t in svg.iter(f"{SVG}text"))  # the y axis label


def test_every_kind_has_its_own_pattern_and_fill(rf, admin_user):
    svg = chart_svg(render(superuser_request(rf, admin_user)).content)

    patterns = svg.findall(f"{SVG}defs/{SVG}pattern")
    assert len(patterns) == len(KIND_ORDER)
    assert len({p.get("data-pattern") for p in patterns}) == len(patterns)
    shapes = {p.find(f"{SVG}path").get("d") for p in patterns}
    assert len(shapes) == len(patterns)
    style = svg.find(f"{SVG}style").text
    fills = re.findall(r"-fill-\d+ \{ fill: ([^;]+);", style)
    assert len(set(fills)) == len(patterns)
    swatches = svg.findall(f"{SVG}g[@class='bounce-chart-legend']/{SVG}rect")
    assert {s.get("fill") for s in swatches} == {f"url(#{p.get('id')})" for p in patterns}


def test_hostile_strings_are_shown_as_text(rf, admin_user, tracker, now):
    make_event(tracker, "hard", now, recipient=f"x@{HOSTILE}.example", reporting_mta=HOSTILE)
    make_event(tracker, HOSTILE_KIND, now)

    content = render(superuser_request(rf, admin_user)).content

    assert HOSTILE.encode() not in content
    assert HOSTILE_KIND.encode() not in content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in content
    svg = chart_svg(content)
    legend = [t.text for t in svg.iter(f"{SVG}text")]
    assert f"{HOSTILE_KIND} (1)" in legend


def test_chart_rejects_mismatched_series_and_unsafe_ids():
    with pytest.raises(ValueError, match="values for 2 categories"):
        charts.stacked_bar_chart(
            categories=["a", "b"],
            series=[charts.Series("x", [1])],
            title="t",
            description="d",
            x_axis_label="x",
            y_axis_label="y",
        )
    with pytest.raises(ValueError, match="id_prefix"):
        charts.stacked_bar_chart(
            categories=["a"],
            series=[],
            title="t",
            description="d",
            x_axis_label="x",
            y_axis_label="y",
            id_prefix='x" onload="alert(1)',
        )


@pytest.mark.parametrize(
    ("maximum", "step"), [(0, 1), (5, 1), (7, 2), (23, 5), (48, 10), (120, 50), (999, 200)]
)
def test_axis_steps_are_one_two_or_five_times_a_power_of_ten(maximum, step):
    assert charts.nice_axis_step(maximum) == step
