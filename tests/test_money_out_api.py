"""The money-out endpoints' refusals, isolation between clients, and the database's own guards on payouts and seller
debt. No PSP here: orders are captured through the service the executor uses, and nothing is sent."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from api.services import IssuedKey, api_client_create
from ledger.models import AccountType, JournalTransaction, Side
from ledger.services import AccountRef, Line, journal_post
from payments.errors import NothingToPayOut
from payments.models import Payout, Refund
from payments.payouts import payout_create
from tests.conftest import captured_order, unique
from wallets.errors import InsufficientFunds
from wallets.models import Bucket, Wallet
from wallets.payouts import payout_reserve_post
from wallets.services import DEBT_KINDS, funds_release, seller_payout_settings_update, wallet_account

pytestmark = pytest.mark.django_db


def post(api: Any, path: str, body: Any, key: str | None = None) -> Any:
    return api.post(
        path, data=json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key or unique("k")
    )


@pytest.fixture
def other(make_api: Callable[[str | None], Any]) -> Any:
    issued: IssuedKey = api_client_create(name=unique("other-shop"))
    return make_api(issued.key)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"amount": 1}, "amount_not_string", "amount"),
        ({"amount": "1.001"}, "amount_precision_exceeded", "amount"),
        ({"amount": "0"}, "amount_not_positive", "amount"),
        ({"amount": "1.00", "currency": "EUR"}, "unknown_field", "currency"),
        ({"reason": "because"}, "field_invalid_choice", "reason"),
        ({"reason": "4242 4242 4242 4242"}, "card_data_not_allowed", "reason"),
    ],
)
def test_a_bad_refund_request_is_a_400_naming_the_field_and_changes_nothing(
    post_payment: Callable[..., Any], api: Any, body: dict[str, Any], code: str, field: str
) -> None:
    po = captured_order(post_payment, unique("seller"))
    journals = JournalTransaction.objects.count()

    answer = post(api, f"/v1/payment-orders/{po.payment_order_id}/refunds", body)

    assert answer.status_code == 400, answer.content
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["field"] == field
    assert not Refund.objects.filter(order=po).exists()
    assert JournalTransaction.objects.count() == journals
    po.refresh_from_db()
    assert po.status == "SUCCESS"


def test_a_refund_retried_with_its_key_is_one_refund(post_payment: Callable[..., Any], api: Any) -> None:
    po = captured_order(post_payment, unique("seller"))
    path = f"/v1/payment-orders/{po.payment_order_id}/refunds"

    first, again = (
        post(api, path, {"amount": "2.50"}, key="refund-1"),
        post(api, path, {"amount": "2.50"}, key="refund-1"),
    )
    reused = post(api, path, {"amount": "3.00"}, key="refund-1")

    assert (first.status_code, again.status_code, reused.status_code) == (201, 201, 422)
    assert again["Idempotent-Replayed"] == "true"
    assert first.json() == again.json()
    assert Refund.objects.filter(order=po).count() == 1


def test_seller_settings_refuse_a_bad_account_and_keep_a_good_one(post_payment: Callable[..., Any], api: Any) -> None:
    seller = unique("seller")
    captured_order(post_payment, seller)

    bad = api.patch(
        f"/v1/sellers/{seller}",
        data=json.dumps({"payout_account": "4242424242424242"}),
        content_type="application/json",
    )
    good = api.patch(
        f"/v1/sellers/{seller}",
        data=json.dumps({"payout_account": "acct_123", "payout_currency": "USD"}),
        content_type="application/json",
    )
    unknown_currency = api.patch(
        f"/v1/sellers/{seller}", data=json.dumps({"payout_currency": "XXX"}), content_type="application/json"
    )

    assert bad.status_code == 400
    assert good.status_code == 200
    assert good.json() == {"seller_account": seller, "payout_account": "acct_123", "payout_currency": "USD"}
    assert (unknown_currency.status_code, unknown_currency.json()["error"]["code"]) == (400, "currency_invalid")


def test_one_open_payout_per_wallet_and_never_more_than_is_available(post_payment: Callable[..., Any]) -> None:
    seller = unique("seller")
    captured_order(post_payment, seller)
    seller_payout_settings_update(seller_account=seller, payout_account="acct_x")
    funds_release(seller_account=seller, currency="EUR", amount=9500, reference="test", actor="test")

    first = payout_create(seller_account=seller, currency="EUR", actor="test")
    with pytest.raises(NothingToPayOut):
        payout_create(seller_account=seller, currency="EUR", actor="test")

    assert first.amount == 9500
    assert Wallet.objects.get(seller_id=seller, currency="EUR").reserved == 9500
    # PostgreSQL itself refuses a reservation beyond the available balance, whoever posts it.
    with pytest.raises(InsufficientFunds):
        payout_reserve_post(payout_id=unique("pyo"), seller_account=seller, currency="EUR", amount=1, actor="test")


def test_only_money_taken_back_may_make_a_seller_debt(post_payment: Callable[..., Any]) -> None:
    seller = unique("seller")
    captured_order(post_payment, seller, amount="10.00")
    debit = Line(wallet_account(seller, "EUR", Bucket.AVAILABLE), Side.DEBIT, 500)
    other_side = Line(AccountRef("psp_clearing:stripe:EUR", AccountType.ASSET, "EUR"), Side.CREDIT, 500)

    journal_post(kind="refund", reference=unique("rf"), lines=[debit, other_side], actor="test")
    assert Wallet.objects.get(seller_id=seller).available == -500
    with pytest.raises(IntegrityError, match="only money taken back"), transaction.atomic():
        journal_post(kind="adjustment", reference=unique("adj"), lines=[debit, other_side], actor="test")


def test_the_database_knows_the_same_debt_kinds_as_the_code() -> None:
    migration = importlib.import_module("wallets.migrations.0006_wallet_held_and_seller_debt")
    assert tuple(migration.DEBT_KINDS) == DEBT_KINDS


def test_an_operator_releases_and_pays_out_from_the_console_and_a_viewer_cannot(
    post_payment: Callable[..., Any],
) -> None:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from audit.models import AuditEntry

    def console(name: str, group: str) -> Client:
        user = User.objects.create_user(name, password="pw-for-tests-only", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return client

    seller = unique("seller")
    po = captured_order(post_payment, seller)
    seller_payout_settings_update(seller_account=seller, payout_account="acct_x")
    viewer, operator = console("v", "finance viewer"), console("o", "finance operator")
    orders = "/admin/payments/paymentorder/"
    release = {"action": "release", "_selected_action": [po.pk], "apply": "1", "note": "delivered, per the courier"}

    viewer.post(orders, release)
    po.refresh_from_db()
    assert po.released_at is None
    operator.post(orders, release)
    po.refresh_from_db()
    assert po.released_at is not None
    wallet_row = Wallet.objects.get(seller_id=seller)
    assert wallet_row.available == 9500

    operator.post(
        "/admin/wallets/wallet/",
        {"action": "pay_out", "_selected_action": [wallet_row.pk], "apply": "1", "note": "seller asked"},
    )

    payout = Payout.objects.get(seller_id=seller)
    assert (payout.amount, payout.actor) == (9500, "admin:o")
    assert list(AuditEntry.objects.order_by("pk").values_list("actor", "action")) == [
        ("o", "order.release"),
        ("o", "payout.create"),
    ]
