from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from payments.models import PaymentEvent, PaymentOrder
from tests.conftest import payment_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("fin", "fin@example.com", "pw-for-tests-only"))
    return client


def test_a_payment_is_found_by_any_of_its_ids_and_shows_its_orders(
    staff: Client, post_payment: Callable[..., Any]
) -> None:
    created = post_payment(payment_body()).json()
    event = PaymentEvent.objects.get(payment_id=created["payment_id"])
    order_id = created["payment_orders"][0]["payment_order_id"]

    for term in (created["payment_id"], created["checkout_id"], order_id):
        page = staff.get("/admin/payments/paymentevent/", {"q": term})
        assert page.status_code == 200
        assert created["payment_id"] in page.content.decode()

    detail = staff.get(f"/admin/payments/paymentevent/{event.pk}/change/")
    assert detail.status_code == 200
    assert order_id in detail.content.decode()


def test_orders_are_read_only_and_show_their_transitions(staff: Client, post_payment: Callable[..., Any]) -> None:
    created = post_payment(payment_body()).json()
    order = PaymentOrder.objects.get(payment_order_id=created["payment_orders"][0]["payment_order_id"])
    order.start_execution(actor="test", reason="shown in the admin")
    order.save()

    page = staff.get(f"/admin/payments/paymentorder/{order.pk}/change/")
    posted = staff.post(f"/admin/payments/paymentorder/{order.pk}/change/", {"failure_code": "edited"})

    assert page.status_code == 200
    assert "shown in the admin" in page.content.decode()
    assert posted.status_code == 403
    order.refresh_from_db()
    assert order.failure_code == ""
    assert staff.get("/admin/payments/paymentorder/add/").status_code == 403


def test_the_admin_presents_itself_as_the_finance_console(staff: Client) -> None:
    page = staff.get("/admin/")
    assert page.status_code == 200
    assert "marketpay finance console" in page.content.decode()


def test_ledger_and_wallets_are_visible_and_read_only(staff: Client) -> None:
    from wallets.services import payin_post

    payin_post(seller_account="seller_adm", currency="EUR", gross=1000, reference="po_admin", actor="test")

    for url in (
        "/admin/ledger/journaltransaction/",
        "/admin/ledger/entry/",
        "/admin/ledger/account/",
        "/admin/wallets/wallet/",
    ):
        assert staff.get(url).status_code == 200, url
    journals = staff.get("/admin/ledger/journaltransaction/", {"q": "po_admin"}).content.decode()
    assert "po_admin" in journals
    assert staff.get("/admin/ledger/entry/add/").status_code == 403
    assert staff.get("/admin/wallets/wallet/add/").status_code == 403


def test_the_webhook_inbox_and_dead_letters_are_listed_read_only(staff: Client) -> None:
    from django.utils import timezone

    from payments.models import DeadLetter, WebhookEvent

    WebhookEvent.objects.create(psp="stripe", event_id="evt_seen", type="payment_intent.succeeded", payload="{}")
    now = timezone.now()
    letter = DeadLetter.objects.create(
        task="payments.order_execute",
        object_type="payment_order",
        object_id="po_stuck",
        attempts=8,
        last_error="TransientPspError: PSP error 500",
        first_failed_at=now,
        last_failed_at=now,
    )

    inbox = staff.get("/admin/payments/webhookevent/", {"processed_at__isempty": "1"})
    letters = staff.get("/admin/payments/deadletter/", {"q": "po_stuck"})

    assert inbox.status_code == 200
    assert "evt_seen" in inbox.content.decode()
    assert letters.status_code == 200
    assert "po_stuck" in letters.content.decode()
    assert staff.post(f"/admin/payments/deadletter/{letter.pk}/delete/").status_code == 403


def test_a_dead_letter_is_replayed_from_the_admin_once(staff: Client, post_payment: Callable[..., Any]) -> None:
    from django.utils import timezone

    from payments.models import DeadLetter

    created = post_payment(payment_body()).json()
    now = timezone.now()
    letter = DeadLetter.objects.create(
        task="payments.order_execute",
        object_type="payment_order",
        object_id=created["payment_orders"][0]["payment_order_id"],
        attempts=8,
        last_error="UnknownPspOutcome: PSP error 500",
        first_failed_at=now,
        last_failed_at=now,
    )

    # the action asks why first, then replays; a double submit replays once
    asked = staff.post("/admin/payments/deadletter/", {"action": "replay", "_selected_action": [str(letter.pk)]})
    assert b"Why: kept on the record." in asked.content
    for _ in range(2):
        response = staff.post(
            "/admin/payments/deadletter/",
            {"action": "replay", "_selected_action": [str(letter.pk)], "apply": "1", "note": "PSP back up"},
            follow=True,
        )
        assert response.status_code == 200

    letter.refresh_from_db()
    assert letter.resolved_at is not None
    assert letter.resolution == "replayed by admin:fin"
    from audit.models import AuditEntry

    assert list(AuditEntry.objects.values_list("actor", "action", "reason")) == [
        ("fin", "dead_letter.replay", "PSP back up")
    ]


def _dead_letter(object_id: str) -> Any:
    from django.utils import timezone

    from payments.models import DeadLetter

    now = timezone.now()
    return DeadLetter.objects.create(
        task="payments.order_execute",
        object_type="payment_order",
        object_id=object_id,
        attempts=8,
        last_error="TransientPspError: PSP error 500",
        first_failed_at=now,
        last_failed_at=now,
    )


def test_a_big_list_shows_its_size_from_the_statistics_and_a_filtered_one_counts_up_to_a_cap(
    staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api import readonly_admin

    # given: a "big" table (bigger than the cap, as PostgreSQL's statistics know it)
    monkeypatch.setattr(readonly_admin, "COUNT_CAP", 2)
    for n in range(3):
        _dead_letter(f"po_big_{n}")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_deadletter")

    # when
    whole = staff.get("/admin/payments/deadletter/").content.decode()
    filtered = staff.get("/admin/payments/deadletter/", {"task": "payments.order_execute"}).content.decode()
    searched = staff.get("/admin/payments/deadletter/", {"q": "po_big_1"}).content.decode()

    # then
    assert "about 3 dead letters" in whole
    assert "more than 2 dead letters" in filtered
    assert "1 dead letter" in searched


def test_an_order_is_found_in_the_order_list_by_its_payment_its_seller_or_its_own_id(
    staff: Client, post_payment: Callable[..., Any]
) -> None:
    created = post_payment(payment_body()).json()
    order_id = created["payment_orders"][0]["payment_order_id"]
    other = post_payment(payment_body()).json()["payment_orders"][0]["payment_order_id"]

    for term in (created["payment_id"], order_id, "seller_7"):
        page = staff.get("/admin/payments/paymentorder/", {"q": term}).content.decode()
        assert order_id in page, term
    by_payment = staff.get("/admin/payments/paymentorder/", {"q": created["payment_id"]}).content.decode()
    assert other not in by_payment
    assert order_id not in staff.get("/admin/payments/paymentorder/", {"q": order_id.upper()}).content.decode()


def test_searches_on_payments_are_exact_so_no_prefix_index_is_needed() -> None:
    # payments/migrations/0013 dropped the LIKE-prefix indexes of the payment tables; a search by prefix would scan.
    for model in (PaymentEvent, PaymentOrder):
        fields = admin.site.get_model_admin(model).search_fields
        assert fields, model
        assert all(name.endswith("__exact") or name.startswith("=") for name in fields), model
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('payments_paymentevent', 'payments_paymentorder')"
            " AND indexdef LIKE '%%pattern_ops%%'"
        )
        assert cursor.fetchall() == []
