"""``manage.py ledger_check``: the ledger sums to zero per currency, every wallet equals its ledger accounts, every
captured order has exactly one pay-in posting (issue 3 §6).

Transactional tests: the check opens its own REPEATABLE READ transaction, whose isolation only its first statement
can set, so it cannot run inside a test's wrapping transaction. Breaking the ledger on purpose means going around
the database's own guards, as a bug, a restore or a hand-written fix would: ``session_replication_role = replica``
switches triggers off for one transaction (the tests connect as a superuser).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction
from django.test import Client

from api.services import IssuedKey
from ledger.models import Side
from ledger.money import to_minor
from ledger.services import Line, accounts_ensure, journal_post
from payments.models import OrderStatus, PaymentOrder
from payments.services import BuyerInfo, NewOrder, payment_create
from reconciliation import selectors, services
from reconciliation.models import LedgerCheckRun
from reconciliation.selectors import (
    LEDGER_BALANCED,
    PAYIN_AMOUNTS_MATCH_ORDERS,
    PAYINS_MATCH_ORDERS,
    WALLETS_MATCH_LEDGER,
    CheckResult,
)
from reconciliation.services import ledger_check_run
from reconciliation.tasks import ledger_check
from tests.conftest import unique, wait_until
from wallets.models import Bucket, Wallet
from wallets.services import (
    funds_release,
    payin_post,
    platform_fees_account,
    psp_clearing_account,
    wallet_account,
    wallet_ensure,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHECKS = (LEDGER_BALANCED, WALLETS_MATCH_LEDGER, PAYINS_MATCH_ORDERS, PAYIN_AMOUNTS_MATCH_ORDERS)


def run_command() -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("ledger_check", stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def latest_run() -> LedgerCheckRun:
    return LedgerCheckRun.objects.latest("started_at")


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "reconciliation.ledger_check" and record.levelno == logging.ERROR
    ]


@pytest.fixture
def make_order(issued_key: IssuedKey) -> Callable[..., PaymentOrder]:
    """A one-order payment moved through ``transitions`` (method names, one save each), as the executor would."""

    def make(*transitions: str, seller: str = "seller_7", amount: str = "10.00", currency: str = "EUR") -> PaymentOrder:
        payment_order_id = unique("po")
        payment_create(
            client=issued_key.client,
            checkout_id=unique("chk"),
            buyer=BuyerInfo("buyer_42"),
            payment_method_token="pm_card_visa",
            orders=[NewOrder(payment_order_id, seller, Decimal(amount), currency)],
        )
        order = PaymentOrder.objects.get(payment_order_id=payment_order_id)
        for name in transitions:
            getattr(order, name)(actor="test")
            order.save()
        return order

    return make


def post_payin(order: PaymentOrder) -> None:
    payin_post(
        seller_account=order.seller_id,
        currency=order.amount.currency.code,
        gross=to_minor(order.amount.amount, order.amount.currency.code),
        reference=order.payment_order_id,
        actor="test",
    )


CAPTURE = ("start_execution", "mark_success")


def test_a_clean_ledger_passes_every_check_and_the_command_exits_0(
    make_order: Callable[..., PaymentOrder], caplog: pytest.LogCaptureFixture
) -> None:
    # given captured orders of two sellers in two currencies with their pay-ins, one of them refunded since, a
    # release, and an order not yet executed (no pay-in, rightly)
    for order in (
        make_order(*CAPTURE),
        make_order(*CAPTURE, seller="seller_9", amount="1500", currency="JPY"),
        make_order(*CAPTURE, "refund_fully"),
    ):
        post_payin(order)
    funds_release(seller_account="seller_7", currency="EUR", amount=500, reference=unique("rel"), actor="test")
    make_order()

    # when
    out, error = run_command()

    # then
    assert error is None
    for title in selectors.CHECK_TITLES.values():
        assert f"{title}: OK" in out
    run = latest_run()
    assert run.ok
    assert (run.violation_count, run.violations, run.actor) == (0, [], "manage.py ledger_check")
    assert run.check_counts == dict.fromkeys(CHECKS, 0)
    assert run.started_at <= run.finished_at
    assert errors_logged(caplog) == []


def test_a_wallet_mapped_after_its_account_was_posted_to_differs_from_its_ledger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a posting that reached a seller's account before the account was mapped to its wallet: the projection
    # applies only entries inserted after the mapping, so the wallet misses it. PostgreSQL refuses such a late
    # mapping (wallets/migrations/0005), so the damage is made with the triggers off, as a bad restore would.
    pending = wallet_account("seller_late", "EUR", Bucket.PENDING)
    clearing = psp_clearing_account("EUR")
    journal_post(
        kind="manual",
        reference=unique("early"),
        lines=[Line(clearing, Side.DEBIT, 950), Line(pending, Side.CREDIT, 950)],
        actor="test",
    )
    with pytest.raises(IntegrityError, match="already has entries"), transaction.atomic():
        wallet_ensure(seller_account="seller_late", currency="EUR")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        wallet_ensure(seller_account="seller_late", currency="EUR")
    wallet = Wallet.objects.get(seller_id="seller_late", currency="EUR")

    # when
    out, error = run_command()

    # then
    line = f"wallet #{wallet.pk} (seller_late EUR): pending 0 != ledger 950"
    assert error is not None
    assert error.returncode == 1
    assert "1 violation(s)" in str(error)
    assert line in out
    run = latest_run()
    assert not run.ok
    assert run.check_counts == {**dict.fromkeys(CHECKS, 0), WALLETS_MATCH_LEDGER: 1}
    assert run.violations == [
        {
            "check": WALLETS_MATCH_LEDGER,
            "detail": {
                "wallet_id": wallet.pk,
                "seller_account": "seller_late",
                "currency": "EUR",
                "wallet": {"pending": 0, "available": 0, "reserved": 0, "held": 0},
                "ledger": {"pending": 950, "available": 0, "reserved": 0, "held": 0},
            },
        }
    ]
    (logged,) = errors_logged(caplog)
    assert f"run #{run.pk}" in logged
    assert line in logged


def test_a_wallet_amount_written_around_its_triggers_differs_from_its_ledger(
    make_order: Callable[..., PaymentOrder],
) -> None:
    # given a wallet whose reserved amount was written directly, with the triggers that refuse it switched off
    post_payin(make_order(*CAPTURE))
    wallet = Wallet.objects.get(seller_id="seller_7", currency="EUR")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE wallets_wallet SET reserved = 123 WHERE id = %s", [wallet.pk])

    # when
    run = ledger_check_run(actor="test")

    # then
    assert run.check_counts == {**dict.fromkeys(CHECKS, 0), WALLETS_MATCH_LEDGER: 1}
    (violation,) = run.violations
    assert selectors.describe_violation(violation) == f"wallet #{wallet.pk} (seller_7 EUR): reserved 123 != ledger 0"


def test_an_unbalanced_ledger_is_reported_with_the_journal_that_breaks_it(caplog: pytest.LogCaptureFixture) -> None:
    # given a balanced JPY posting, and an EUR journal transaction with a debit and no credit, committed with the
    # deferred balance trigger switched off (PostgreSQL refuses it otherwise: this is the defence behind it)
    journal_post(
        kind="manual",
        reference=unique("jpy"),
        lines=[
            Line(psp_clearing_account("JPY"), Side.DEBIT, 1500),
            Line(platform_fees_account("JPY"), Side.CREDIT, 1500),
        ],
        actor="test",
    )
    eur_clearing = psp_clearing_account("EUR")
    clearing = accounts_ensure(accounts=[eur_clearing])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "INSERT INTO ledger_journaltransaction (kind, reference, memo, actor)"
            " VALUES ('manual', 'one-sided', '', 'test') RETURNING id"
        )
        (journal_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)"
            " VALUES (%s, %s, 'D', 100, 'EUR', now())",
            [journal_id, clearing[eur_clearing.code]],
        )

    # when
    out, error = run_command()

    # then only EUR is reported, naming the journal transaction
    assert error is not None
    run = latest_run()
    assert run.check_counts == {**dict.fromkeys(CHECKS, 0), LEDGER_BALANCED: 1}
    assert run.violations == [
        {
            "check": LEDGER_BALANCED,
            "detail": {
                "currency": "EUR",
                "debits": 100,
                "credits": 0,
                "unbalanced_journals": [{"id": journal_id, "kind": "manual", "reference": "one-sided", "net": 100}],
            },
        }
    ]
    assert "EUR: debits 100 != credits 0 (debits - credits = 100)" in out
    assert f"#{journal_id} manual:one-sided (net 100)" in out
    assert errors_logged(caplog)


@pytest.mark.parametrize(
    "transitions",
    [CAPTURE, (*CAPTURE, "refund_partially"), (*CAPTURE, "refund_fully")],
    ids=["success", "partially refunded", "refunded"],
)
def test_a_captured_order_without_its_payin_is_reported(
    make_order: Callable[..., PaymentOrder], transitions: tuple[str, ...]
) -> None:
    # given
    order = make_order(*transitions)

    # when
    out, error = run_command()

    # then
    assert error is not None
    run = latest_run()
    assert run.check_counts[PAYINS_MATCH_ORDERS] == 1
    assert run.violations == [
        {
            "check": PAYINS_MATCH_ORDERS,
            "detail": {"payment_order_id": order.payment_order_id, "order_status": order.status, "payin_postings": 0},
        }
    ]
    assert f"order {order.payment_order_id} is {order.status} with 0 pay-in postings, not 1" in out


def test_a_captured_order_with_its_payin_passes(make_order: Callable[..., PaymentOrder]) -> None:
    order = make_order(*CAPTURE)
    post_payin(order)

    run = ledger_check_run(actor="test")

    assert run.ok, run.violations


def test_a_payin_for_an_order_not_captured_or_for_no_order_is_reported(
    make_order: Callable[..., PaymentOrder],
) -> None:
    # given a pay-in for an order still NOT_STARTED, one for an order that FAILED, and one that names no order
    not_started, failed = make_order(), make_order("start_execution", "mark_failed")
    for order in (not_started, failed):
        post_payin(order)
    stray = unique("po_none")
    payin_post(seller_account="seller_7", currency="EUR", gross=700, reference=stray, actor="test")

    # when
    out, error = run_command()

    # then
    assert error is not None
    run = latest_run()
    assert run.check_counts[PAYINS_MATCH_ORDERS] == 3
    details = {v["detail"]["payment_order_id"]: v["detail"] for v in run.violations}
    assert details == {
        not_started.payment_order_id: {
            "payment_order_id": not_started.payment_order_id,
            "order_status": OrderStatus.NOT_STARTED,
            "payin_postings": 1,
        },
        failed.payment_order_id: {
            "payment_order_id": failed.payment_order_id,
            "order_status": OrderStatus.FAILED,
            "payin_postings": 1,
        },
        stray: {"payment_order_id": stray, "order_status": None, "payin_postings": 1},
    }
    assert f"pay-in posting for order {not_started.payment_order_id}, which is NOT_STARTED, not captured" in out
    assert f"pay-in posting {stray}: no payment order has this id" in out


def test_a_second_payin_journal_for_one_reference_is_refused_even_with_triggers_off(
    make_order: Callable[..., PaymentOrder],
) -> None:
    # The pay-in check counts one posting per journal (reconciliation/selectors.py): that holds only while
    # PostgreSQL's unique index on (kind, reference) refuses a second journal, which no session setting switches off.
    order = make_order(*CAPTURE)
    post_payin(order)

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "INSERT INTO ledger_journaltransaction (kind, reference, memo, actor) VALUES ('payin', %s, '', 'test')",
            [order.payment_order_id],
        )


def test_the_checks_read_one_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a pay-in for no order committed by another session while the run is under way, after its first check
    # (in the helper lane) has read, and before the pay-in check (in the first lane) begins: that lane waits for it,
    # so only its snapshot, taken when the run began, can keep the posting out of sight
    posted = threading.Event()

    def posted_elsewhere() -> None:
        try:
            payin_post(seller_account="seller_7", currency="EUR", gross=900, reference="po_late", actor="test")
        finally:
            connections.close_all()  # this thread's own connection

    first, payins = selectors.CHECKS[LEDGER_BALANCED], selectors.CHECKS[PAYINS_MATCH_ORDERS]

    def first_then_a_concurrent_posting(*, limit: int) -> CheckResult:
        result = first(limit=limit)
        thread = threading.Thread(target=posted_elsewhere)
        thread.start()
        thread.join()
        posted.set()
        return result

    def payins_after_the_posting(*, limit: int) -> Any:
        assert posted.wait(timeout=30), "the helper lane never posted"
        return payins(limit=limit)

    monkeypatch.setitem(selectors.CHECKS, LEDGER_BALANCED, first_then_a_concurrent_posting)
    monkeypatch.setitem(selectors.CHECKS, PAYINS_MATCH_ORDERS, payins_after_the_posting)

    # when
    during = ledger_check_run(actor="test")
    monkeypatch.setitem(selectors.CHECKS, LEDGER_BALANCED, first)
    monkeypatch.setitem(selectors.CHECKS, PAYINS_MATCH_ORDERS, payins)
    after = ledger_check_run(actor="test")

    # then the run that was under way does not see the posting; the next one does
    assert during.ok, during.violations
    assert after.check_counts[PAYINS_MATCH_ORDERS] == 1


def test_both_lanes_read_the_snapshot_taken_before_either_started(
    make_order: Callable[..., PaymentOrder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a wallet written around its triggers by another session once the first lane has taken its snapshot,
    # before the helper lane (which runs the wallet check) has begun
    post_payin(make_order(*CAPTURE))
    wallet = Wallet.objects.get(seller_id="seller_7", currency="EUR")

    def tampered_elsewhere() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = replica")
                cursor.execute("UPDATE wallets_wallet SET reserved = 123 WHERE id = %s", [wallet.pk])
        finally:
            connections.close_all()  # this thread's own connection

    snapshot_export = services._snapshot_export

    def then_tampered() -> str:
        snapshot = snapshot_export()
        thread = threading.Thread(target=tampered_elsewhere)
        thread.start()
        thread.join()
        return snapshot

    assert WALLETS_MATCH_LEDGER not in services._FIRST_LANE  # else this would not test the helper lane
    monkeypatch.setattr(services, "_snapshot_export", then_tampered)

    # when
    during = ledger_check_run(actor="test")
    monkeypatch.undo()
    after = ledger_check_run(actor="test")

    # then the helper lane read the first lane's snapshot, not one of its own taken later; the next run sees it
    assert during.ok, during.violations
    assert after.check_counts == {**dict.fromkeys(CHECKS, 0), WALLETS_MATCH_LEDGER: 1}


def test_a_run_keeps_a_bounded_number_of_violations_and_counts_them_all(monkeypatch: pytest.MonkeyPatch) -> None:
    # given three stray pay-ins and room for two
    monkeypatch.setattr(services, "KEPT_PER_CHECK", 2)
    for _ in range(3):
        payin_post(seller_account="seller_7", currency="EUR", gross=700, reference=unique("po"), actor="test")

    # when
    out, error = run_command()

    # then
    assert error is not None
    assert "3 violation(s)" in str(error)
    run = latest_run()
    assert (run.violation_count, len(run.violations)) == (3, 2)
    assert "... and 1 more, not stored" in out


def test_the_nightly_beat_entry_runs_the_check_on_a_real_worker(celery_worker_app: Any) -> None:
    from config.schedule import BEAT_SCHEDULE

    # given
    entry = BEAT_SCHEDULE["ledger-check"]
    assert entry["schedule"] == crontab(hour=1, minute=30)
    assert settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": "maintenance"}  # the Procfile's worker serves it

    # when beat's entry fires (sent by name, through Redis, as beat sends it)
    celery_worker_app.send_task(entry["task"])  # routed to this run's copy of the queue

    # then the worker stores a run
    wait_until(lambda: LedgerCheckRun.objects.filter(actor="celery:reconciliation.ledger_check").exists())
    assert latest_run().ok


def test_the_task_runs_the_check_and_returns_the_run() -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=700, reference=unique("po"), actor="test")

    run_id = ledger_check()

    run = LedgerCheckRun.objects.get(pk=run_id)
    assert (run.ok, run.actor) == (False, "celery:reconciliation.ledger_check")


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("fin", "fin@example.com", "pw-for-tests-only"))
    return client


def test_failed_runs_show_in_the_admin_and_cannot_be_changed(staff: Client) -> None:
    # given a failed run
    stray = unique("po_none")
    payin_post(seller_account="seller_7", currency="EUR", gross=700, reference=stray, actor="test")
    run = ledger_check_run(actor="test")

    # when
    listing = staff.get("/admin/reconciliation/ledgercheckrun/", {"ok__exact": "0"})
    detail = staff.get(f"/admin/reconciliation/ledgercheckrun/{run.pk}/change/")
    posted = staff.post(f"/admin/reconciliation/ledgercheckrun/{run.pk}/change/", {"actor": "edited"})

    # then
    assert listing.status_code == 200
    assert f"/admin/reconciliation/ledgercheckrun/{run.pk}/change/" in listing.content.decode()
    assert detail.status_code == 200
    assert f"pay-in posting {stray}: no payment order has this id" in detail.content.decode()
    assert posted.status_code == 403
    assert staff.get("/admin/reconciliation/ledgercheckrun/add/").status_code == 403
    assert staff.post(f"/admin/reconciliation/ledgercheckrun/{run.pk}/delete/").status_code == 403
    run.refresh_from_db()
    assert run.actor == "test"


def test_a_payin_of_another_amount_than_its_order_is_reported(make_order: Callable[..., PaymentOrder]) -> None:
    # given a captured order of 10.00 EUR whose pay-in was posted for 9.99
    order = make_order(*CAPTURE)
    payin_post(seller_account="seller_7", currency="EUR", gross=999, reference=order.payment_order_id, actor="test")

    # when
    out, error = run_command()

    # then
    assert error is not None
    run = latest_run()
    assert run.check_counts == {**dict.fromkeys(CHECKS, 0), PAYIN_AMOUNTS_MATCH_ORDERS: 1}
    assert run.violations[0]["detail"] == {
        "payment_order_id": order.payment_order_id,
        "order": {"currency": "EUR", "amount": 1000},
        "payin": {"currency": "EUR", "gross": 999},
    }
    assert f"pay-in for order {order.payment_order_id} is 999 EUR (minor units), the order 1000 EUR" in out
