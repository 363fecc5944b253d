"""Support staff in a real browser: log in, find an address, change it, read its history."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "support-password-123"


@pytest.fixture
def support_user(django_user_model):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("support", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Bounce support"))
    return user


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_a_support_user_logs_in_and_sees_the_bounce_tracker(page, live_server, support_user):
    from playwright.sync_api import expect

    log_in(page, live_server, "support")
    expect(page.locator("#content")).to_contain_text("Bounce tracker")
