"""Stored XSS in a real Chromium: hostile mail-borne text never runs and adds no element.

The same hostile rows as ``tests/test_admin_security.py`` (every field the admin
shows carries ``<script>``, ``onerror``/``onload`` attribute break-outs, SVG and
``javascript:`` URLs). Chromium visits every admin page with a dialog handler
registered first (without one an ``alert`` would be dismissed silently and prove
nothing), then looks for any element the payloads would have created.
"""

from __future__ import annotations

import pytest

from tests.test_admin_security import hostile, hostile_urls  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "admin-password-123"
# Elements or attributes only an executed payload could have put in the DOM.
INJECTED_SELECTOR = (
    "img[src='x'], iframe, svg[onload], [onerror], [onload], a[href^='javascript:' i]"
)
SCRIPTS_WITH_ALERT = (
    "Array.from(document.scripts).filter(s => s.textContent.includes('alert(')).length"
)


@pytest.fixture
def admin_page(log_in, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    return log_in("boss", PASSWORD)


def test_no_payload_runs_or_creates_an_element_on_any_admin_page(
    dialogs,
    admin_page,
    live_server,
    hostile,  # noqa: F811 - the imported fixture
):
    from playwright.sync_api import expect

    page = admin_page
    urls = hostile_urls(*hostile)
    for name, url in urls.items():
        response = page.goto(f"{live_server.url}{url}")
        assert response is not None, name
        assert response.status == 200, name
        expect(page.locator("#content")).to_be_visible()
        assert page.locator(INJECTED_SELECTOR).count() == 0, name
        assert page.evaluate(SCRIPTS_WITH_ALERT) == 0, name
    # Shown as text where expected.
    page.goto(f"{live_server.url}{urls['address page']}")
    expect(page.locator("#content")).to_contain_text("<script>alert(1)</script>")
    page.goto(f"{live_server.url}{urls['event raw']}")
    expect(page.locator("pre.bt-raw")).to_contain_text("<svg onload=alert(3)>")

    # The pages after a click: the un-suppress confirmation and the attach form.
    page.goto(f"{live_server.url}{urls['address list']}")
    page.locator("#result_list tbody input.action-select").first.check()
    page.select_option("select[name=action]", "unsuppress_selected")
    page.click("button[name=index]")
    expect(page.locator("#content")).to_contain_text("<script>alert(1)</script>")
    assert page.locator(INJECTED_SELECTOR).count() == 0
    page.goto(f"{live_server.url}{urls['unmatched list']}")
    page.locator("#result_list tbody input.action-select").first.check()
    page.select_option("select[name=action]", "attach_to_address")
    page.click("button[name=index]")
    expect(page.locator("input[name=address]")).to_be_visible()
    assert page.locator(INJECTED_SELECTOR).count() == 0
    page.fill("input[name=address]", "<img src=x onerror=alert(9)>@example.com")
    page.click("input[type=submit]")
    expect(page.locator(".errorlist")).to_be_visible()
    assert page.locator(INJECTED_SELECTOR).count() == 0

    page.wait_for_timeout(300)  # give any injected handler the chance to fire
    assert dialogs == []


def test_the_dialog_handler_does_see_an_alert(dialogs, admin_page, live_server):
    """The checks above are not vacuous: a real alert on an admin page is recorded."""
    page = admin_page
    page.goto(f"{live_server.url}/admin/")
    page.evaluate("alert('control')")
    assert dialogs == [f"{live_server.url}/admin/: control"]
