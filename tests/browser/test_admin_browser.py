"""Support staff in a real browser: find an address, change it, read its history.

Playwright drives Debian's Chromium against ``live_server``. The data comes from
real DSNs fed through the receiving code, so the history, states and chart are
what a site would show. The tests also take the screenshots that ``make screenshots``
puts in docs/screenshots/ (tests/browser/conftest.py).
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from bounce_tracker.core.settings import get_settings
from bounce_tracker.models import BounceEvent, EmailAddressTracker
from bounce_tracker.receiving.receive import read_message, receive_message
from bounce_tracker.sending.tracking import ensure_trackers
from tests import messages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "support-password-123"
XSS = '<script>alert("xss")</script><img src=x onerror=alert(2)>'


def bounce(address: str, **dsn: str) -> None:
    tracker = EmailAddressTracker.objects.for_email(address).get()
    raw = messages.dsn(address, return_path=f"{tracker.encoded_from}@bounces.example.com", **dsn)
    message = read_message(io.BytesIO(raw), 10**6)
    receive_message(message, "MAILER-DAEMON", f"{tracker.encoded_from}@bounces.example.com")


@pytest.fixture
def demo_data() -> None:
    """Addresses in several states, with histories made of real DSNs."""
    addresses = [f"reader{n}@example.com" for n in range(1, 9)] + [
        "gone@example.net",
        "full@example.org",
        "slow@example.org",
        "evil@example.org",
    ]
    ensure_trackers(addresses, get_settings())
    EmailAddressTracker.objects.update(msg_count=12)
    bounce(
        "gone@example.net",
        diagnostic="smtp; 550 5.1.1 <gone@example.net>: Recipient "
        "address rejected: User unknown in virtual mailbox table",
    )
    # Older history, spread over the last weeks, for the chart.
    for days_ago in range(2, 28, 3):
        bounce(
            f"reader{days_ago % 8 + 1}@example.com",
            status="4.2.2",
            diagnostic="smtp; 452 4.2.2 Mailbox full",
        )
        BounceEvent.objects.filter(pk=BounceEvent.objects.latest("pk").pk).update(
            received_at=timezone.now() - timedelta(days=days_ago)
        )
    for _ in range(3):
        bounce("full@example.org", status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
    bounce(
        "slow@example.org",
        status="4.4.1",
        action="delayed",
        diagnostic="X-Postfix; connect to mx.example.org: Connection timed out",
    )
    bounce("evil@example.org", status="5.2.2", diagnostic=f"smtp; 552 5.2.2 {XSS} quota")


@pytest.fixture
def support_user(django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("support", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Bounce support"))
    return user


@pytest.fixture
def logged_in(log_in, support_user):
    return log_in("support", PASSWORD)


def screenshot(page, directory: Path, name: str) -> None:
    path = directory / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def test_search_an_address_and_toggle_ignore_bounces_in_one_click(
    logged_in, live_server, demo_data, screenshots
):
    from playwright.sync_api import expect

    page = logged_in
    page.goto(f"{live_server.url}/admin/bounce_tracker/emailaddresstracker/")
    expect(page.locator("#result_list")).to_contain_text("gone@example.net")
    expect(page.locator("#result_list")).to_contain_text("suppressed: hard")
    screenshot(page, screenshots, "address-list.png")

    page.fill("#searchbar", "GONE@Example")
    page.press("#searchbar", "Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    rows.first.get_by_role("button", name="Ignore bounces").click()

    expect(page.locator(".messagelist")).to_be_visible()
    expect(page.locator("#searchbar")).to_have_value("GONE@Example")  # back on the same list
    expect(rows.first.get_by_role("button", name="Stop ignoring")).to_be_visible()
    page.reload()
    expect(rows.first).to_contain_text("ignoring bounces")
    assert EmailAddressTracker.objects.get(email="gone@example.net").ignore_bounces


def test_read_the_history_then_un_suppress_after_confirming(
    logged_in, live_server, demo_data, screenshots
):
    from playwright.sync_api import expect

    page = logged_in
    tracker = EmailAddressTracker.objects.get(email="gone@example.net")
    page.goto(f"{live_server.url}/admin/bounce_tracker/emailaddresstracker/{tracker.pk}/change/")
    expect(page.locator("#content")).to_contain_text("not sent to since")
    expect(page.locator("#content")).to_contain_text("5.1.1")
    expect(page.locator("#content")).to_contain_text("User unknown")
    screenshot(page, screenshots, "address-detail.png")

    page.goto(f"{live_server.url}/admin/bounce_tracker/emailaddresstracker/?q=gone")
    page.locator("#result_list tbody input.action-select").first.check()
    page.select_option("select[name=action]", "unsuppress_selected")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text("gone@example.net")
    expect(page.locator("#content")).to_contain_text("bounce count")
    assert EmailAddressTracker.objects.get(pk=tracker.pk).suppressed_reason == "hard"

    page.click("input[type=submit][value^='Yes']")
    expect(page.locator(".messagelist")).to_contain_text("Un-suppressed")
    tracker.refresh_from_db()
    assert (tracker.suppressed_reason, tracker.bounce_count) == ("", 0)


def test_the_dashboard_shows_the_bounce_chart(logged_in, live_server, demo_data, screenshots):
    from playwright.sync_api import expect

    page = logged_in
    page.goto(f"{live_server.url}/admin/bounce_tracker/emailaddresstracker/")
    page.get_by_role("link", name="Bounce dashboard").click()
    chart = page.locator("svg[role=img]")
    expect(chart).to_be_visible()
    expect(chart.locator("title").first).to_contain_text("per day by kind")
    expect(page.locator("#content")).to_contain_text("example.org")
    screenshot(page, screenshots, "dashboard.png")


def test_a_script_in_a_stored_diagnostic_is_shown_as_text_and_never_runs(
    dialogs, logged_in, live_server, demo_data
):
    from playwright.sync_api import expect

    page = logged_in
    tracker = EmailAddressTracker.objects.get(email="evil@example.org")
    page.goto(f"{live_server.url}/admin/bounce_tracker/emailaddresstracker/{tracker.pk}/change/")
    expect(page.locator("#content")).to_contain_text('<script>alert("xss")</script>')
    page.get_by_role("link", name="view as text").first.click()
    expect(page.locator("pre")).to_contain_text("<script>")
    page.goto(f"{live_server.url}/admin/bounce_tracker/bounceevent/")
    expect(page.locator("#result_list")).to_contain_text("evil@example.org")
    page.wait_for_timeout(300)  # give any injected handler the chance to fire
    assert dialogs == []
