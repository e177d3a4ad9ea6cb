"""Browser tests: Debian's chromium driven by Playwright against pytest-django's live server (the chromium and its
arguments: tests/support/browser.py)."""

import pytest
from django.db import connections

from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS, chromium_executable


@pytest.fixture
def chromium_path() -> str:
    return chromium_executable()


@pytest.fixture
def browser_page(chromium_path, live_server, settings, monkeypatch):
    """A page in a fresh headless chromium, with clipboard access for the copy button."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still plain sync code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(
            base_url=live_server.url,
            permissions=["clipboard-read", "clipboard-write"],
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()
            # The test's ORM calls ran inside Playwright's greenlet, whose database connection pytest-django does not
            # see: left open, it would keep the test database from being dropped at the end of the run.
            connections.close_all()


@pytest.fixture
def screenshot(browser_page):
    def take(name: str) -> None:
        browser_page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return take
