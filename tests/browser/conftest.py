"""Real-browser tests: Playwright for Python driving Debian's Chromium.

Never ``playwright install``: it downloads a browser, which this project doesn't
need and can't fetch. The browser is /usr/bin/chromium from Debian's package.

The tests take screenshots of the admin pages into a temporary directory, or into
``$BOUNCE_TRACKER_SCREENSHOTS`` when set: ``make screenshots`` sets it to
docs/screenshots/ to refresh the pictures in the documentation. A test run never
writes into docs/ otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import missing_service

# Playwright's sync API runs an event loop in this thread; Django's ORM refuses to
# run beside one unless told it is safe (it is: one thread, no coroutines).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        missing_service(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-gpu",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where this test saves its screenshots: ``$BOUNCE_TRACKER_SCREENSHOTS`` or tmp_path."""
    chosen = os.environ.get("BOUNCE_TRACKER_SCREENSHOTS")
    directory = Path(chosen).resolve() if chosen else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1680, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def log_in(page: Any, live_server: Any) -> Callable[[str, str], Any]:
    """Logs ``page`` in to the admin as a user; returns the page, on the admin index."""

    def log_in(username: str, password: str) -> Any:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        return page

    return log_in


@pytest.fixture
def dialogs(page: Any) -> list[str]:
    """Every dialog (``alert`` …) ``page`` opens, as "URL: message", each dismissed.

    Registered before the test's first ``goto``: without a handler Chromium dismisses
    an alert silently, and a test that "sees no alert" would prove nothing.
    """
    seen: list[str] = []

    def record(dialog: Any) -> None:
        seen.append(f"{page.url}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", record)
    return seen
