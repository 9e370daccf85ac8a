"""What the browser tests share: Playwright driving Debian's chromium, the rule that skips them where there is no
chromium (or fails them, where CI requires them), and a screenshot of the page in var/test-artifacts/ when a test
fails. tests/conftest.py makes the ``page`` fixture available to every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"
# CI installs chromium and sets this, so that a missing browser fails there instead of skipping.
REQUIRED = os.environ.get("REQUIRE_BROWSER_TESTS") == "1"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRED, reason=f"no chromium at {CHROMIUM} (apt-get install chromium)"
)


@pytest.fixture
def page(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop under this thread; the test's own database reads are still plain
    # blocking calls, which Django would otherwise refuse next to a running loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            browser.close()
            # With that loop running, Django keeps this thread's database connections apart from the ones it had
            # before (asgiref's Local), so the test's own queries opened a connection nobody else closes: close it
            # while the loop still runs, or it holds the test database open until the run ends.
            connections.close_all()
