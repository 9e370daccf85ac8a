"""The demo storefront in a real browser (Playwright driving Debian's chromium): cart, the PSP's hosted page, a test
card, and our result page following the payment until the webhook has moved it. Every part is real: live server,
sandbox PSP process, signed webhooks, Celery worker. A failing test leaves a screenshot in var/test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_helpers import needs_chromium
from tests.psp_helpers import configure
from tests.sandbox import Sandbox

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]


@pytest.fixture
def storefront(sandbox: Sandbox, settings: Any, live_server: Any, celery_worker_app: Any) -> Iterator[str]:
    settings.STRIPE_API_BASE = sandbox.url
    configure(sandbox, reset=True, webhook_url=f"{live_server.url}/v1/webhooks/stripe", processing_delay_seconds=0.5)
    yield f"{live_server.url}/storefront/"
    configure(sandbox, reset=True)


def pay_on_hosted_page(page: Any, storefront: str, sandbox: Sandbox, card: str) -> None:
    page.goto(storefront)
    page.click("#pay-hosted")
    page.wait_for_url(re.compile(re.escape(sandbox.url) + r"/c/pay/cs_"))
    page.fill("#cardNumber", card)
    page.fill("#cardExpiry", "12 / 34")
    page.fill("#cardCvc", "123")
    page.fill("#billingName", "Ann Buyer")
    page.click("#submit")


def test_hosted_page_with_4242_ends_on_our_result_page_showing_success(
    page: Any, storefront: str, sandbox: Sandbox
) -> None:
    from playwright.sync_api import expect

    pay_on_hosted_page(page, storefront, sandbox, "4242 4242 4242 4242")

    page.wait_for_url(re.compile(re.escape(storefront) + r"payments/pay_\w+/\?session_id=cs_"))
    expect(page.locator("#payment-status")).to_have_text("SUCCEEDED")
    expect(page.locator("#orders .status")).to_have_text(["SUCCESS", "SUCCESS"])


def test_hosted_page_with_the_decline_card_shows_the_failure(page: Any, storefront: str, sandbox: Sandbox) -> None:
    from playwright.sync_api import expect

    pay_on_hosted_page(page, storefront, sandbox, "4000 0000 0000 0002")

    # the PSP's page says the card was declined and keeps the buyer there
    expect(page.locator("#error")).to_contain_text("declined")
    assert "/c/pay/cs_" in page.url
    assert "4000000000000002" not in page.content()
    # the buyer gives up: back on our page, which shows the payment failed once the PSP has closed its page
    page.click("#cancel")
    page.wait_for_url(re.compile(re.escape(storefront) + r"payments/pay_\w+/\?cancelled=1"))
    expect(page.locator("#cancelled")).to_be_visible()
    expect(page.locator("#payment-status")).to_have_text("FAILED")
    expect(page.locator("#orders .failure")).to_have_text(["checkout_expired", "checkout_expired"])


def test_saved_card_payment_shows_success(page: Any, storefront: str) -> None:
    from playwright.sync_api import expect

    page.goto(storefront)
    page.select_option("#saved-card", "pm_card_visa")
    page.click("#pay-saved")

    page.wait_for_url(re.compile(re.escape(storefront) + r"payments/pay_\w+/$"))
    expect(page.locator("#payment-status")).to_have_text("SUCCEEDED")


def test_saved_card_needing_3d_secure_is_confirmed_at_the_bank_and_succeeds(page: Any, storefront: str) -> None:
    from playwright.sync_api import expect

    page.goto(storefront)
    page.select_option("#saved-card", "pm_card_authenticationRequired")
    page.click("#pay-saved")
    page.wait_for_url(re.compile(re.escape(storefront) + r"payments/pay_\w+/$"))

    # both orders wait for the buyer; each opens the bank's page in a new tab
    links = page.locator("#orders a", has_text="Confirm with your bank")
    expect(links).to_have_count(2)
    for index in range(2):
        with page.context.expect_page() as opened:
            links.nth(index).click()
        bank = opened.value
        bank.wait_for_load_state()
        bank.click("#complete")
        bank.wait_for_load_state()
        bank.close()

    expect(page.locator("#payment-status")).to_have_text("SUCCEEDED")
