"""The risk check before execution: each built-in rule, the review hold and a person's decision, and the external
provider over HTTP (a local server standing in for it). Rejections and holds happen before any PSP call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from api.carddata import find_card_number
from audit.models import AuditEntry, SecurityEvent
from audit.roles import finance_groups_sync
from payments import execution
from payments.models import OrderStatus, PaymentOrder, RiskReview, RiskReviewStatus
from payments.recovery import recovery_sweep
from payments.risk.reviews import ReviewDecided, risk_review_approve, risk_review_reject
from payments.risk.sanctions import SanctionsList
from tests.conftest import order, payment_body, unique
from tests.psp_helpers import configure
from tests.sandbox import Sandbox
from wallets.models import Seller

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def psp(sandbox: Sandbox, settings: Any, tmp_path: Any) -> Iterator[Sandbox]:
    settings.STRIPE_API_BASE = sandbox.url
    listed = tmp_path / "sanctions.txt"
    listed.write_text("# test list\nIvan Fictitious Sanctionov\nAcme Embargoed Trading LLC\n", encoding="utf-8")
    settings.RISK_SANCTIONS_FILE = str(listed)
    configure(sandbox, reset=True)
    return sandbox


def executed(post_payment: Callable[..., Any], **buyer: str) -> PaymentOrder:
    amount = buyer.pop("amount", "10.00")
    body = payment_body(
        buyer_info={"id": buyer.pop("id", unique("buyer")), "country": "DE", **buyer},
        payment_orders=[order(amount=amount)],
    )
    order_id = post_payment(body).json()["payment_orders"][0]["payment_order_id"]
    return execution.order_execute(payment_order_id=order_id)


def person(role: str) -> User:
    finance_groups_sync()  # a transactional test's flush took the migration's groups away
    user = User.objects.create_user(unique("p"), password="pw-for-tests-only", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def operator() -> User:
    return person("finance operator")


def test_names_are_screened_exactly_and_fuzzily() -> None:
    listed = SanctionsList.from_lines(["Ivan Fictitious Sanctionov  # listed 2026", "", "# comment"])
    exact = listed.screen("SANCTIONOV, ivan  fictitious", threshold=0.88)
    fuzzy = listed.screen("Ivan Fictitous Sanctionov", threshold=0.88)
    assert exact is not None
    assert (exact.listed, exact.score) == ("Ivan Fictitious Sanctionov", 1.0)
    assert fuzzy is not None
    assert 0.88 <= fuzzy.score < 1.0
    assert listed.screen("Ivana Smith", threshold=0.88) is None
    assert listed.screen("", threshold=0.88) is None


def test_a_listed_buyer_is_rejected_before_the_psp(psp: Sandbox, post_payment: Callable[..., Any]) -> None:
    rejected = executed(post_payment, name="Ivan Fictitious Sanctionov")

    assert rejected.status == OrderStatus.FAILED
    assert rejected.failure_code == "risk_rejected"
    assert "Ivan Fictitious Sanctionov" in rejected.failure_reason
    assert rejected.psp_reference == ""  # never sent
    event = SecurityEvent.objects.get(kind="risk_rejected")
    assert event.actor == f"buyer {rejected.event.buyer_id}"
    assert event.detail.startswith(f"{rejected.payment_order_id}: sanctions")


def test_a_listed_seller_is_rejected(psp: Sandbox, post_payment: Callable[..., Any]) -> None:
    Seller.objects.update_or_create(account="seller_7", defaults={"display_name": "ACME Embargoed Trading, LLC"})
    assert executed(post_payment).failure_code == "risk_rejected"


def test_a_near_match_is_held_then_approved_and_sent(psp: Sandbox, post_payment: Callable[..., Any]) -> None:
    held = executed(post_payment, name="Ivan Fictitous Sanctionov")
    review = RiskReview.objects.get(order=held)
    assert (held.status, review.status) == (OrderStatus.NOT_STARTED, RiskReviewStatus.PENDING)
    assert "close to Ivan Fictitious Sanctionov" in review.rule
    # neither the executor nor the sweep sends it while it is held
    assert execution.order_execute(payment_order_id=held.payment_order_id).status == OrderStatus.NOT_STARTED
    PaymentOrder.objects.filter(pk=held.pk).update(updated_at=held.created_at.replace(year=2000))
    report = recovery_sweep()
    assert report is not None
    assert held.payment_order_id not in report.requeued

    risk_review_approve(review_id=review.pk, user=operator(), note="a different person, checked the ID")

    sent = execution.order_execute(payment_order_id=held.payment_order_id)  # what the queued task runs
    assert sent.status == OrderStatus.SUCCESS
    assert AuditEntry.objects.get().action == "risk_review.approve"


def test_a_held_order_rejected_by_a_person_fails_and_a_viewer_cannot_decide(
    psp: Sandbox, post_payment: Callable[..., Any]
) -> None:
    held = executed(post_payment, name="Ivan Fictitous Sanctionov")
    review = RiskReview.objects.get(order=held)
    with pytest.raises(Exception, match="may not decide"):
        risk_review_reject(review_id=review.pk, user=person("finance viewer"), note="no")

    risk_review_reject(review_id=review.pk, user=operator(), note="the same person")
    with pytest.raises(ReviewDecided):
        risk_review_approve(review_id=review.pk, user=operator(), note="changed my mind")

    held.refresh_from_db()
    assert (held.status, held.failure_code) == (OrderStatus.FAILED, "risk_rejected")
    assert "(risk review:" in SecurityEvent.objects.get(kind="risk_rejected").detail


def test_countries_and_amounts(psp: Sandbox, post_payment: Callable[..., Any], settings: Any) -> None:
    settings.RISK_BLOCKED_COUNTRIES = ["KP"]
    settings.RISK_REVIEW_AMOUNTS = {"EUR": 500}
    settings.RISK_REJECT_AMOUNTS = {"EUR": 5000}

    blocked = executed(post_payment, country="KP")
    large = executed(post_payment, amount="600.00")
    huge = executed(post_payment, amount="6000.00")

    assert (blocked.status, blocked.failure_reason) == (OrderStatus.FAILED, "country: KP is blocked")
    assert RiskReview.objects.get(order=large).rule == "amount: above 500 EUR"
    assert huge.failure_reason == "amount: above 5000 EUR"


def test_velocity_per_buyer_rejects_the_payment_over_the_limit_and_counts_a_retry_once(
    psp: Sandbox, post_payment: Callable[..., Any], settings: Any
) -> None:
    settings.RISK_VELOCITY_LIMIT = 2
    buyer = unique("buyer")
    first = executed(post_payment, id=buyer)
    again = execution.order_execute(payment_order_id=first.payment_order_id)  # the same payment, counted once
    second = executed(post_payment, id=buyer)
    third = executed(post_payment, id=buyer)
    other = executed(post_payment, id=unique("buyer"))  # another buyer, the same saved card token

    assert [o.status for o in (first, again, second)] == [OrderStatus.SUCCESS] * 3
    assert third.failure_code == "risk_rejected"
    assert third.failure_reason.startswith("velocity: 3 payments by this buyer")
    assert other.failure_reason.startswith("velocity: 4 payments by this payment method")


@pytest.fixture
def provider(settings: Any) -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    answers = {"Approve Me": "approve", "Reject Me": "reject"}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({**body, "auth": self.headers.get("Authorization")})
            verdict = answers.get(body["buyer_name"])
            payload = json.dumps({"verdict": verdict, "rule": "model v3"} if verdict else {"oops": 1}).encode()
            self.send_response(200 if verdict else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.RISK_PROVIDER = "http"
    settings.RISK_HTTP_URL = f"http://127.0.0.1:{server.server_port}/assess"
    settings.RISK_HTTP_TOKEN = "risk-token"
    yield seen
    server.shutdown()


def test_an_external_provider_decides_and_its_outage_holds_the_order(
    psp: Sandbox, post_payment: Callable[..., Any], provider: list[dict[str, Any]]
) -> None:
    approved = executed(post_payment, name="Approve Me")
    rejected = executed(post_payment, name="Reject Me")
    unanswered = executed(post_payment, name="Anyone Else")

    assert approved.status == OrderStatus.SUCCESS
    assert (rejected.failure_code, rejected.failure_reason) == ("risk_rejected", "external: model v3")
    assert RiskReview.objects.get(order=unanswered).rule == "external: unavailable (HTTPError)"
    assert provider[0]["payment_order_id"] == approved.payment_order_id
    assert provider[0]["amount"] == "10.00"
    assert provider[0]["auth"] == "Bearer risk-token"
    assert find_card_number(provider) is None  # a token, never card data
    assert provider[0]["payment_method_token"] == "pm_card_visa"
