"""The finance console in a real browser (Playwright driving Debian's chromium), as each of its three roles: people
log in on the admin's own login page, find a payment, work the findings queue through the actions' forms (tick the
row, choose the action, Go, write why, submit), approve with four eyes, replay a dead letter, reconcile an uploaded
file, release funds and pay a wallet out. A viewer sees everything and can change nothing. No PSP: the data is built
with the services the executor and the nightly run use. A failing test leaves a screenshot in var/test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.utils import timezone

from audit.models import AuditEntry
from audit.roles import finance_groups_sync
from payments.models import DeadLetter, PaymentEvent, PaymentOrder, Payout
from payments.services import order_succeed
from reconciliation.models import Adjustment, AdjustmentStatus, MismatchStatus, ReconciliationRun
from tests.browser_helpers import needs_chromium
from tests.conftest import captured_order, payment_body, unique, unplaced_finding
from wallets.models import Wallet
from wallets.services import seller_payout_settings_update

pytestmark = [pytest.mark.django_db(transaction=True), needs_chromium]

PASSWORD = "pw-for-tests-only"


@pytest.fixture(autouse=True)
def finance_groups() -> None:
    """A transactional test empties every table when it ends, the migration's groups included: each test puts the
    roles back as audit/roles.py defines them (a test holds the migrated groups to the same definition)."""
    finance_groups_sync()


@pytest.fixture
def admin_url(live_server: Any) -> str:
    return f"{live_server.url}/admin"


def person(name: str, *groups: str) -> User:
    user = User.objects.create_user(name, password=PASSWORD, is_staff=True)
    user.groups.set(Group.objects.filter(name__in=groups))
    assert user.groups.count() == len(groups)
    return user


def sign_in(page: Any, admin_url: str, user: User) -> None:
    """Through the admin's login page, as a person does; whoever was signed in before is signed out first."""
    from playwright.sync_api import expect

    page.context.clear_cookies()
    page.goto(f"{admin_url}/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools strong")).to_have_text(user.username)


def act(page: Any, action: str, *pks: int) -> None:
    """Tick the rows, choose the action in the dropdown and press Go."""
    for pk in pks:
        page.check(f"input[name='_selected_action'][value='{pk}']")
    page.select_option("select[name='action']", label=action)
    page.get_by_role("button", name="Go").click()


def give_reason(page: Any, note: str, submit: str) -> None:
    """The action's own page asks why; write it and submit."""
    page.fill("textarea[name='note']", note)
    page.get_by_role("button", name=submit).click()


def search(page: Any, term: str) -> None:
    page.fill("#searchbar", term)
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(rf"\?q={re.escape(term)}$"))


def message(page: Any, level: str) -> Any:
    return page.locator(f"ul.messagelist li.{level}")


def readonly(page: Any, field: str) -> Any:
    return page.locator(f".field-{field} .readonly")


def test_a_viewer_finds_a_payment_by_any_id_and_reads_its_story(
    page: Any, admin_url: str, post_payment: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    # given a captured payment of a buyer of its own
    buyer = unique("buyer")
    body = payment_body(buyer_info={"id": buyer, "email": "b@example.com", "country": "DE"})
    created = post_payment(body).json()
    payment_id = created["payment_id"]
    order_ids = [o["payment_order_id"] for o in created["payment_orders"]]
    for order_id in order_ids:
        started = PaymentOrder.objects.get(payment_order_id=order_id)
        started.start_execution(actor="test")
        started.save()
        order_succeed(payment_order_id=order_id, psp_reference=unique("pi"), actor="test")
    psp_reference = PaymentOrder.objects.get(payment_order_id=order_ids[1]).psp_reference
    post_payment(payment_body())  # another payment, which no search below may find
    sign_in(page, admin_url, person("v", "finance viewer"))
    page.goto(f"{admin_url}/payments/paymentevent/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)

    # when it is searched by any of its ids, then it alone is found
    for term in (payment_id, order_ids[0], psp_reference, buyer):
        search(page, term)
        expect(page.locator("#result_list tbody th a")).to_have_text([payment_id])

    # its page tells the story: the orders, their transitions, the ledger postings
    page.locator("#result_list tbody th a").click()
    expect(page.get_by_role("heading", name=f"Payment {payment_id}")).to_be_visible()
    orders = page.locator("fieldset.module", has=page.locator("table caption", has_text="Transitions"))
    expect(orders).to_have_count(2)
    for index, order_id in enumerate(order_ids):
        story = orders.nth(index)
        expect(story.locator("h2")).to_contain_text(f"Order {order_id}")
        expect(story.locator("h2")).to_contain_text("SUCCESS")
        transitions = story.locator("table tr").filter(has=page.locator("td"))
        expect(transitions).to_have_count(2)
        expect(transitions.nth(1)).to_contain_text("EXECUTING")
        expect(transitions.nth(1)).to_contain_text("SUCCESS")
    expect(orders.nth(1)).to_contain_text(psp_reference)
    postings = page.locator("fieldset.module", has=page.get_by_role("heading", name="Ledger postings"))
    expect(postings).to_contain_text("psp_clearing:stripe:EUR")
    for ordered in body["payment_orders"]:
        expect(postings).to_contain_text(f"seller_pending:{ordered['seller_account']}:EUR")


def test_an_operator_filters_the_queue_and_resolves_a_finding_with_a_note(page: Any, admin_url: str) -> None:
    from playwright.sync_api import expect

    # given findings of two categories, one of them already resolved
    open_one = unplaced_finding("txn_open")
    unplaced_finding("txn_other", category="amount_difference")
    unplaced_finding("txn_done", status=MismatchStatus.RESOLVED)
    sign_in(page, admin_url, person("o", "finance operator"))
    page.goto(f"{admin_url}/reconciliation/mismatch/")
    references = page.locator("#result_list td.field-reference")
    expect(references).to_have_count(3)

    # the filters narrow the queue to one category, then to what is open in it
    filters = page.locator("#changelist-filter")
    filters.locator("details[data-filter-title='category']").get_by_role("link", name="Unclassifiable").click()
    page.wait_for_url(re.compile(r"category__exact=unclassifiable"))
    expect(references).to_have_count(2)
    expect(page.locator("#result_list")).not_to_contain_text("txn_other")
    filters.locator("details[data-filter-title='status']").get_by_role("link", name="Open", exact=True).click()
    page.wait_for_url(re.compile(r"status__exact=open"))
    expect(references).to_have_text(["txn_open"])

    # when the operator resolves it through the action's form
    act(page, "Resolve with a note", open_one.pk)
    expect(page.get_by_role("heading", level=1)).to_have_text(["Resolve findings"])
    give_reason(page, "a test charge of the PSP's own", "Resolve")

    # then the queue says so and no longer lists it among the open ones
    expect(message(page, "success")).to_have_text([f"unclassifiable txn_open ({MismatchStatus.RESOLVED})"])
    expect(page.locator("#result_list")).to_have_count(0)
    page.goto(f"{admin_url}/reconciliation/mismatch/{open_one.pk}/change/")
    expect(readonly(page, "status")).to_have_text("Resolved")
    expect(readonly(page, "resolver")).to_have_text("o")
    expect(readonly(page, "note")).to_have_text("a test charge of the PSP's own")
    expect(readonly(page, "audit_trail")).to_contain_text("o · mismatch.resolve · a test charge of the PSP's own")
    entry = AuditEntry.objects.get(object_type="mismatch", object_id=str(open_one.pk))
    assert (entry.actor, entry.action, entry.reason) == ("o", "mismatch.resolve", "a test charge of the PSP's own")


def test_four_eyes_the_proposer_is_refused_and_another_approver_writes_off(page: Any, admin_url: str) -> None:
    from playwright.sync_api import expect

    # given a finding, and an operator who is an approver too
    held = unplaced_finding("txn_unplaced")
    both = person("b", "finance operator", "finance approver")
    sign_in(page, admin_url, both)

    # the operator proposes a write-off
    page.goto(f"{admin_url}/reconciliation/mismatch/")
    act(page, "Propose a write-off to suspense (a second person approves)", held.pk)
    give_reason(page, "below the investigation threshold", "Propose")
    expect(message(page, "success")).to_have_count(1)
    adjustment = Adjustment.objects.get(mismatch=held)
    assert (adjustment.kind, adjustment.proposed_by) == (Adjustment.Kind.WRITE_OFF, "b")

    # when the same person tries to approve it, the console refuses and nothing is posted
    page.goto(f"{admin_url}/reconciliation/adjustment/")
    act(page, "Approve and post (not your own)", adjustment.pk)
    give_reason(page, "looks right to me", "Approve and post")
    expect(message(page, "error")).to_contain_text(["approved by someone other than its proposer"])
    expect(message(page, "success")).to_have_count(0)
    adjustment.refresh_from_db()
    assert adjustment.status == AdjustmentStatus.PROPOSED

    # then a different approver approves it, and the finding is written off
    sign_in(page, admin_url, person("a", "finance approver"))
    page.goto(f"{admin_url}/reconciliation/adjustment/")
    act(page, "Approve and post (not your own)", adjustment.pk)
    give_reason(page, "agreed", "Approve and post")
    expect(message(page, "success")).to_have_count(1)
    expect(message(page, "error")).to_have_count(0)
    page.goto(f"{admin_url}/reconciliation/mismatch/{held.pk}/change/")
    expect(readonly(page, "status")).to_have_text("Written Off")
    held.refresh_from_db()
    adjustment.refresh_from_db()
    assert (held.status, adjustment.status, adjustment.decided_by) == (
        MismatchStatus.WRITTEN_OFF,
        AdjustmentStatus.APPROVED,
        "a",
    )
    assert held.resolution_journal_id == adjustment.journal_id is not None


def test_a_viewer_sees_the_queue_the_payment_and_the_trial_balance_and_can_change_nothing(
    page: Any, admin_url: str, post_payment: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    # given a finding and a captured order
    held = unplaced_finding("txn_seen")
    captured = captured_order(post_payment, unique("seller"))
    payment = PaymentEvent.objects.get(pk=captured.event_id)
    sign_in(page, admin_url, person("v", "finance viewer"))

    # the viewer reads the queue, the payment's page and the trial balance
    page.goto(f"{admin_url}/reconciliation/mismatch/")
    expect(page.locator("#result_list td.field-reference")).to_have_text(["txn_seen"])
    page.goto(f"{admin_url}/payments/paymentevent/")
    page.get_by_role("link", name=payment.payment_id).click()
    expect(page.get_by_role("heading", name=f"Order {captured.payment_order_id}")).to_be_visible()
    page.goto(f"{admin_url}/ledger/account/")
    page.get_by_role("link", name="Trial balance").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(["Trial balance"])
    expect(page.get_by_role("heading", name="EUR — balanced")).to_be_visible()
    expect(page.locator("#content")).to_contain_text("suspense:EUR")

    # no list offers the viewer an action
    for changelist in (
        "reconciliation/mismatch",
        "reconciliation/adjustment",
        "payments/deadletter",
        "payments/paymentorder",
        "wallets/wallet",
    ):
        response = page.goto(f"{admin_url}/{changelist}/")
        assert response is not None
        assert response.status == 200, changelist
        expect(page.locator("#changelist")).to_be_visible()
        expect(page.locator("select[name='action']")).to_have_count(0)

    # and an action posted anyway, as a form would, changes nothing
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for changelist, action, pk in (
        ("reconciliation/mismatch", "resolve", held.pk),
        ("payments/paymentorder", "release", captured.pk),
    ):
        response = page.request.post(
            f"{admin_url}/{changelist}/",
            form={
                "csrfmiddlewaretoken": token,
                "action": action,
                "_selected_action": str(pk),
                "index": "0",
                "apply": "1",
                "note": "I should not be able to",
            },
        )
        assert response.status < 500, changelist
    held.refresh_from_db()
    captured.refresh_from_db()
    assert (held.status, held.resolver) == (MismatchStatus.OPEN, "")
    assert captured.released_at is None
    assert not AuditEntry.objects.exists()


def test_an_operator_replays_a_dead_letter_with_a_note_and_it_closes(
    page: Any, admin_url: str, post_payment: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    # given an order whose execution ended in the dead letter queue
    order_id = post_payment(payment_body()).json()["payment_orders"][0]["payment_order_id"]
    now = timezone.now()
    letter = DeadLetter.objects.create(
        task="payments.order_execute",
        object_type="payment_order",
        object_id=order_id,
        attempts=8,
        last_error="UnknownPspOutcome: PSP error 500",
        first_failed_at=now,
        last_failed_at=now,
    )
    sign_in(page, admin_url, person("o", "finance operator"))

    # when the operator replays it from the dead letters page
    page.goto(f"{admin_url}/payments/deadletter/")
    act(page, "Replay: send the work again, once", letter.pk)
    expect(page.get_by_role("heading", level=1)).to_have_text(["Replay dead letters"])
    give_reason(page, "the PSP is back up", "Replay")

    # then the letter is closed as replayed, with who and why on its page
    expect(message(page, "success")).to_contain_text(["replayed"])
    letter.refresh_from_db()
    assert letter.resolved_at is not None
    assert letter.resolution == "replayed by admin:o"
    page.goto(f"{admin_url}/payments/deadletter/{letter.pk}/change/")
    expect(readonly(page, "resolution")).to_have_text("replayed by admin:o")
    expect(readonly(page, "audit_trail")).to_contain_text("o · dead_letter.replay · the PSP is back up")


def test_an_operator_reconciles_an_uploaded_file_and_a_viewer_may_not(
    page: Any, admin_url: str, post_payment: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    # given a captured 100.00 EUR order, and the PSP's settlement file with its charge at the agreed fee
    captured = captured_order(post_payment, unique("seller"))
    settles_on = timezone.now().date() + timedelta(days=settings.PSP_SETTLEMENT_DELAY_DAYS)
    report = (
        "balance_transaction_id,available_on_utc,currency,gross,fee,net,reporting_category,source_id,"
        "payment_intent_id,payment_metadata[payment_order_id]\n"
        f"txn_up1,{settles_on} 00:00:00,eur,100.00,3.20,96.80,charge,ch_up1,{captured.psp_reference},"
        f"{captured.payment_order_id}\n"
    )
    sign_in(page, admin_url, person("o", "finance operator"))

    # when the operator uploads it from the runs page
    page.goto(f"{admin_url}/reconciliation/reconciliationrun/")
    page.get_by_role("link", name="Reconcile an uploaded file").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(["Reconcile an uploaded settlement file"])
    page.select_option("select[name='psp']", "stripe")
    page.fill("input[name='settlement_date']", settles_on.isoformat())
    page.set_input_files(
        "input[name='file']", files=[{"name": "day.csv", "mimeType": "text/csv", "buffer": report.encode()}]
    )
    page.get_by_role("button", name="Reconcile").click()

    # then the run is shown, its line matched
    expect(message(page, "success")).to_contain_text(["1 matched"])
    run = ReconciliationRun.objects.get()
    assert page.url.endswith(f"/admin/reconciliation/reconciliationrun/{run.pk}/change/")
    assert (run.source, run.file_name, run.counts, run.actor) == ("upload", "day.csv", {"matched": 1}, "admin:o")

    # a viewer is not offered the upload, and is refused its page
    sign_in(page, admin_url, person("v", "finance viewer"))
    page.goto(f"{admin_url}/reconciliation/reconciliationrun/")
    expect(page.locator("#result_list td.field-summary")).to_have_text(["1 matched"])
    expect(page.get_by_role("link", name="Reconcile an uploaded file")).to_have_count(0)
    response = page.goto(f"{admin_url}/reconciliation/reconciliationrun/upload/")
    assert response is not None
    assert response.status == 403
    assert ReconciliationRun.objects.get().attempts == 1


def test_an_operator_releases_an_orders_funds_and_pays_the_wallet_out(
    page: Any, admin_url: str, post_payment: Callable[..., Any]
) -> None:
    from playwright.sync_api import expect

    # given a captured 100.00 EUR order (95.00 for the seller after the platform's fee), not yet released
    seller = unique("seller")
    captured = captured_order(post_payment, seller)
    seller_payout_settings_update(seller_account=seller, payout_account="acct_x")
    sign_in(page, admin_url, person("o", "finance operator"))

    # when the operator releases its funds
    page.goto(f"{admin_url}/payments/paymentorder/")
    search(page, captured.payment_order_id)
    act(page, "Release the seller's funds (delivery confirmed)", captured.pk)
    give_reason(page, "delivered, per the courier", "Release")
    # the order's id as it is, which the exact search box finds again (not "Po_...")
    expect(message(page, "success")).to_have_text([f"{captured.payment_order_id}: funds released"])
    captured.refresh_from_db()
    assert captured.released_at is not None

    # and pays the seller's wallet out
    page.goto(f"{admin_url}/wallets/wallet/")
    search(page, seller)
    wallet = Wallet.objects.get(seller_id=seller, currency="EUR")
    assert wallet.available == 9500
    act(page, "Pay out the available balance now", wallet.pk)
    give_reason(page, "the seller asked", "Pay out")

    # then one payout of the whole available balance is created, waiting for its task
    expect(message(page, "success")).to_have_text([re.compile(r"payout pyo_\w+ of 9500 EUR \(minor units\) created")])
    payout = Payout.objects.get(seller_id=seller)
    expect(message(page, "success")).to_contain_text(payout.payout_id)
    assert (payout.amount, payout.currency, payout.actor) == (9500, "EUR", "admin:o")
    wallet.refresh_from_db()
    assert (wallet.available, wallet.reserved) == (0, 9500)
    assert list(AuditEntry.objects.order_by("pk").values_list("actor", "action", "reason")) == [
        ("o", "order.release", "delivered, per the courier"),
        ("o", "payout.create", "the seller asked"),
    ]
