"""Fault injection: each fault strikes at rate 1 and never at rate 0, and the same seed and the same calls give the
same faults. API faults are seen through stripe-python as the project's adapter sees them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import requests
import stripe
from django.db import connection

from psp_sandbox import faults, knobs, reports
from psp_sandbox.models import BalanceTransaction, Event, FaultAttempt, PaymentIntent, WebhookDelivery
from tests.conftest import unique, wait_until
from tests.psp_helpers import auth, configure, control, get, intent_params
from tests.sandbox import database_url, running_sandbox
from tests.test_psp_sandbox_reports import many_transactions, parse
from tests.webhook_receiver import Receiver, receiving_webhooks

if TYPE_CHECKING:
    from tests.sandbox import Sandbox

over_http = pytest.mark.django_db(transaction=True)


def config_with(**values: Any) -> knobs.Config:
    return knobs.Config(**{**{knob.name: knob.default for knob in knobs.KNOBS}, **values})


def create(sandbox: Sandbox, key: str, client: stripe.StripeClient | None = None) -> stripe.PaymentIntent:
    params = intent_params(metadata={"payment_order_id": key})
    return (client or sandbox.client).v1.payment_intents.create(params=params, options={"idempotency_key": key})


# --- Determinism ------------------------------------------------------------------------------------------------------


def test_a_decision_depends_on_seed_kind_identity_and_attempt_only() -> None:
    def pattern(seed: str) -> list[bool]:
        return [
            faults.fires(0.5, seed=seed, kind="api_5xx", identity=f"POST /v1/payment_intents k{i}", attempt=a)
            for i in range(40)
            for a in range(3)
        ]

    assert pattern("s1") == pattern("s1")
    assert pattern("s1") != pattern("s2")
    assert 30 < sum(pattern("s1")) < 90  # about half
    assert not faults.fires(0.0, seed="s", kind="k", identity="i")
    assert faults.fires(1.0, seed="s", kind="k", identity="i")


def test_the_api_fault_of_a_call_is_the_first_kind_that_strikes() -> None:
    assert faults.api_fault(config_with(fault_429_rate=1.0, fault_5xx_rate=1.0), "i", 0) == "429"
    assert faults.api_fault(config_with(fault_reset_rate=1.0, fault_429_rate=1.0), "i", 0) == "reset"
    assert faults.api_fault(config_with(fault_lost_response_rate=1.0), "i", 0) == "lost_response"
    assert faults.api_fault(config_with(), "i", 0) is None


@over_http
def test_the_same_seed_and_calls_give_the_same_api_faults_and_another_seed_others(sandbox: Sandbox) -> None:
    def run(seed: str) -> list[str]:
        FaultAttempt.objects.all().delete()  # a fresh run: every call at its first attempt again
        configure(sandbox, fault_seed=seed, fault_5xx_rate=0.5)
        outcomes = []
        for index in range(12):
            try:
                create(sandbox, f"po_seeded_{index}")
                outcomes.append("ok")
            except stripe.APIError as exc:
                outcomes.append(str(exc.http_status))
        return outcomes

    first = run("seed-a")
    assert first == run("seed-a")
    assert set(first) == {"ok", "500"}
    assert run("seed-b") != first


@over_http
def test_retries_of_one_call_follow_the_seeds_sequence_until_one_gets_through(sandbox: Sandbox) -> None:
    configure(sandbox, fault_seed="retries", fault_5xx_rate=0.5)
    identity = "POST /v1/payment_intents po_retried"
    expected = [faults.fires(0.5, seed="retries", kind="api_5xx", identity=identity, attempt=a) for a in range(6)]
    first_ok = expected.index(False)

    seen = []
    for _ in range(first_ok + 1):
        try:
            create(sandbox, "po_retried")
            seen.append(False)
        except stripe.APIError:
            seen.append(True)

    assert seen == expected[: first_ok + 1]
    assert PaymentIntent.objects.filter(payment_order_id="po_retried").count() == 1


# --- Each API fault at rate 1 and rate 0 ------------------------------------------------------------------------------


@over_http
def test_a_5xx_fault_answers_500_and_does_nothing(sandbox: Sandbox) -> None:
    configure(sandbox, fault_5xx_rate=1.0)
    with pytest.raises(stripe.APIError) as caught:
        create(sandbox, unique("po"))
    assert caught.value.http_status == 500
    assert caught.value.json_body is not None
    assert caught.value.json_body["error"]["type"] == "api_error"
    assert PaymentIntent.objects.count() == 0
    # control calls are never struck
    assert control(sandbox, "/v1/sandbox/config", fault_5xx_rate="0").status_code == 200
    assert create(sandbox, unique("po")).status == "succeeded"


@over_http
def test_a_429_fault_is_a_rate_limit_error_and_does_nothing(sandbox: Sandbox) -> None:
    configure(sandbox, fault_429_rate=1.0)
    with pytest.raises(stripe.RateLimitError) as caught:
        sandbox.client.v1.payment_intents.retrieve("pi_anything")
    assert caught.value.http_status == 429
    with pytest.raises(stripe.RateLimitError):
        create(sandbox, unique("po"))
    assert PaymentIntent.objects.count() == 0
    configure(sandbox, fault_429_rate=0.0)
    assert create(sandbox, unique("po")).status == "succeeded"


@over_http
def test_a_reset_fault_resets_the_connection_and_does_nothing(sandbox: Sandbox) -> None:
    configure(sandbox, fault_reset_rate=1.0)
    with pytest.raises(stripe.APIConnectionError):
        create(sandbox, unique("po"))
    with pytest.raises(requests.ConnectionError) as raw:
        requests.get(f"{sandbox.url}/v1/payment_intents/pi_x", headers=auth(sandbox), timeout=10)
    assert "reset" in str(raw.value).lower()
    assert PaymentIntent.objects.count() == 0
    configure(sandbox, fault_reset_rate=0.0)
    assert create(sandbox, unique("po")).status == "succeeded"


@over_http
def test_a_lost_response_is_applied_and_committed_and_a_retry_replays_it(sandbox: Sandbox) -> None:
    # given
    configure(sandbox, fault_lost_response_rate=1.0)
    key = unique("po")
    # when
    with pytest.raises(stripe.APIConnectionError):
        create(sandbox, key)
    # then: the charge happened
    assert PaymentIntent.objects.filter(payment_order_id=key).count() == 1
    configure(sandbox, fault_lost_response_rate=0.0)
    again = create(sandbox, key)
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert PaymentIntent.objects.filter(payment_order_id=key).count() == 1


@over_http
def test_a_timeout_fault_holds_the_call_past_the_clients_timeout_then_applies_it(sandbox: Sandbox) -> None:
    configure(sandbox, fault_timeout_rate=1.0, fault_timeout_seconds=1.5)
    impatient = stripe.StripeClient(
        sandbox.api_key,
        base_addresses={"api": sandbox.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=0.5),
    )
    key = unique("po")
    started = time.monotonic()

    with pytest.raises(stripe.APIConnectionError):
        create(sandbox, key, client=impatient)

    assert time.monotonic() - started < 1.4
    wait_until(lambda: PaymentIntent.objects.filter(payment_order_id=key).count() == 1, timeout=10)
    configure(sandbox, fault_timeout_rate=0.0)
    assert create(sandbox, unique("po"), client=impatient).status == "succeeded"


@over_http
def test_latency_delays_every_api_call_but_not_control_calls(sandbox: Sandbox) -> None:
    configure(sandbox, latency_ms=400)
    started = time.monotonic()
    create(sandbox, unique("po"))
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    configure(sandbox, latency_ms=0)
    assert time.monotonic() - started < 0.4


@pytest.mark.django_db(transaction=True)
def test_faults_can_be_configured_from_the_environment(django_db_setup: None) -> None:
    env = {"SANDBOX_FAULT_SEED": "from-env", "SANDBOX_FAULT_429_RATE": "1", "SANDBOX_WEBHOOK_DELAY_MS": "250"}
    with running_sandbox(database=database_url(connection.settings_dict), workers=1, env=env) as sandbox:
        settings = get(sandbox, "/v1/sandbox/config").json()
        assert (settings["fault_seed"], settings["fault_429_rate"], settings["webhook_delay_ms"]) == (
            "from-env",
            1.0,
            250,
        )
        assert settings["overrides"] == {}
        with pytest.raises(stripe.RateLimitError):
            create(sandbox, unique("po"))
    with pytest.raises(Exception, match="SANDBOX_FAULT_5XX_RATE"):
        knobs.from_environ({"SANDBOX_FAULT_5XX_RATE": "2"})


# --- Webhook faults ---------------------------------------------------------------------------------------------------


@pytest.fixture
def receiver(sandbox: Sandbox) -> Iterator[Receiver]:
    with receiving_webhooks() as running:
        configure(sandbox, webhook_url=running.url)
        yield running


def deliveries_of(intent_id: str) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(event__data__object__id=intent_id).order_by("id"))


@over_http
def test_a_dropped_webhook_is_recorded_and_never_sent(sandbox: Sandbox, receiver: Receiver) -> None:
    configure(sandbox, webhook_drop_rate=1.0)
    dropped = create(sandbox, unique("po"))
    configure(sandbox, webhook_drop_rate=0.0)
    sent = create(sandbox, unique("po"))

    receiver.wait_for(lambda r: len(r.of_object(sent.id)) == 1)

    assert receiver.of_object(dropped.id) == []
    assert [row.status for row in deliveries_of(dropped.id)] == [WebhookDelivery.Status.DROPPED]
    assert [row.status for row in deliveries_of(sent.id)] == [WebhookDelivery.Status.DELIVERED]
    assert len(receiver.all()) == 1


@over_http
def test_a_duplicated_webhook_arrives_twice(sandbox: Sandbox, receiver: Receiver) -> None:
    configure(sandbox, webhook_duplicate_rate=1.0)
    twice = create(sandbox, unique("po"))
    receiver.wait_for(lambda r: len(r.of_object(twice.id)) == 2)
    configure(sandbox, webhook_duplicate_rate=0.0)
    once = create(sandbox, unique("po"))
    receiver.wait_for(lambda r: len(r.of_object(once.id)) == 1)

    copies = receiver.of_object(twice.id)
    assert copies[0].event["id"] == copies[1].event["id"]
    assert copies[1].verified().id == copies[0].event["id"]
    assert deliveries_of(twice.id)[0].duplicate is True
    assert deliveries_of(once.id)[0].duplicate is False
    wait_until(lambda: len(receiver.of_object(once.id)) == 1 and len(receiver.all()) == 3)


@over_http
def test_a_delayed_webhook_waits_its_delay(sandbox: Sandbox, receiver: Receiver) -> None:
    configure(sandbox, webhook_delay_ms=1500)
    sent_at = time.monotonic()
    delayed = create(sandbox, unique("po"))
    receiver.wait_for(lambda r: len(r.of_object(delayed.id)) == 1)
    assert receiver.of_object(delayed.id)[0].at - sent_at >= 1.5

    configure(sandbox, webhook_delay_ms=0)
    prompt = create(sandbox, unique("po"))
    receiver.wait_for(lambda r: len(r.of_object(prompt.id)) == 1)
    # Judged by when it was sent, not by next_attempt_at: the delivery loop may already have claimed the row, which
    # moves next_attempt_at a lease into the future.
    row = deliveries_of(prompt.id)[0]
    assert row.delivered_at is not None
    assert row.delivered_at - row.created < timedelta(milliseconds=1500)


@over_http
@pytest.mark.parametrize(("rate", "expected"), [(1.0, "reversed"), (0.0, "in order")])
def test_a_reordered_webhook_arrives_after_a_later_one(
    sandbox: Sandbox, receiver: Receiver, rate: float, expected: str
) -> None:
    # given: an intent waiting for 3-D Secure (requires_action), then authenticated (succeeded)
    configure(sandbox, webhook_reorder_rate=rate, webhook_reorder_hold_ms=300)
    intent = sandbox.client.v1.payment_intents.create(params=intent_params("pm_card_authenticationRequired"))
    control(sandbox, f"/v1/sandbox/payment_intents/{intent.id}/authenticate", outcome="succeed")
    # when
    receiver.wait_for(lambda r: len(r.of_object(intent.id)) == 2)
    # then
    types = [item.event["type"] for item in receiver.of_object(intent.id)]
    created_order = ["payment_intent.requires_action", "payment_intent.succeeded"]
    assert types == (list(reversed(created_order)) if expected == "reversed" else created_order)
    assert {row.reordered for row in deliveries_of(intent.id)} == {rate == 1.0}


def test_webhook_fault_decisions_are_the_same_for_the_same_seed_and_event_identity() -> None:
    identities = [f"request:po_{i}:payment_intent.succeeded:1" for i in range(50)]

    def decisions(seed: str) -> list[tuple[bool, bool, bool]]:
        return [
            tuple(
                faults.fires(0.3, seed=seed, kind=kind, identity=identity)
                for kind in ("webhook_drop", "webhook_duplicate", "webhook_reorder")
            )  # type: ignore[misc]
            for identity in identities
        ]

    assert decisions("w") == decisions("w")
    assert decisions("w") != decisions("v")


@over_http
def test_an_event_s_fault_identity_comes_from_the_request_s_idempotency_key(sandbox: Sandbox) -> None:
    key = unique("po")
    intent = create(sandbox, key)
    assert Event.objects.get(data__object__id=intent.id).fault_identity == f"request:{key}:payment_intent.succeeded:1"


# --- Report faults ----------------------------------------------------------------------------------------------------


def day_report(sandbox: Sandbox, day: date) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    text = get(sandbox, "/v1/sandbox/settlement_report", date=day.isoformat()).text
    altered = get(sandbox, "/v1/sandbox/settlement_report/alterations", date=day.isoformat()).json()["data"]
    return parse(text), altered


REPORT_DAY = date(2024, 3, 10)


@over_http
def test_report_faults_at_rate_0_leave_the_report_exact(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 30)
    rows, altered = day_report(sandbox, REPORT_DAY)
    assert (len(rows), altered) == (30, [])


@over_http
def test_missing_rows_are_left_out_and_listed(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 30)
    configure(sandbox, report_missing_row_rate=1.0)
    rows, altered = day_report(sandbox, REPORT_DAY)
    assert rows == []
    assert {a["kind"] for a in altered} == {"missing_row"}
    assert len(altered) == 30


@over_http
def test_extra_rows_follow_their_row_and_are_listed(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 10)
    configure(sandbox, report_extra_row_rate=1.0)
    rows, altered = day_report(sandbox, REPORT_DAY)
    assert len(rows) == 20
    known = set(BalanceTransaction.objects.values_list("id", flat=True))
    extras = [row for row in rows if row["balance_transaction_id"] not in known]
    assert {row["balance_transaction_id"] for row in extras} == {a["balance_transaction_id"] for a in altered}
    assert rows[1]["balance_transaction_id"] == altered[0]["balance_transaction_id"]
    assert rows[1]["gross"] == rows[0]["gross"]


@over_http
def test_amounts_off_differ_by_the_listed_delta(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 20)
    configure(sandbox, report_amount_off_rate=1.0)
    rows, altered = day_report(sandbox, REPORT_DAY)
    deltas = {a["balance_transaction_id"]: a["delta_minor_units"] for a in altered}
    assert len(deltas) == 20
    assert all(1 <= abs(delta) <= 100 for delta in deltas.values())
    for row in rows:
        txn = BalanceTransaction.objects.get(pk=row["balance_transaction_id"])
        reported = reports.major(txn.amount + deltas[txn.id], txn.currency)
        assert row["gross"] == reported
        assert row["gross"] != reports.major(txn.amount, txn.currency)


@over_http
def test_next_day_rows_move_to_the_next_days_report(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 10)
    configure(sandbox, report_next_day_rate=1.0)
    rows, altered = day_report(sandbox, REPORT_DAY)
    next_rows, _ = day_report(sandbox, REPORT_DAY + timedelta(days=1))
    assert rows == []
    assert len(next_rows) == 10
    assert {row["available_on"] for row in next_rows} == {"2024-03-11 00:00:00"}
    # listed by the report the rows left and by the one they moved to
    _, moved_in = day_report(sandbox, REPORT_DAY + timedelta(days=1))
    assert altered == moved_in
    assert {(a["kind"], a["available_on"]) for a in altered} == {("next_day", "2024-03-11")}
    assert len(altered) == 10


@over_http
def test_a_row_both_late_and_missing_is_listed_by_the_report_it_left(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 10)
    configure(sandbox, report_next_day_rate=1.0, report_missing_row_rate=1.0)

    rows, altered = day_report(sandbox, REPORT_DAY)
    next_rows, moved_in = day_report(sandbox, REPORT_DAY + timedelta(days=1))

    # gone from its own day's report, which says why: it moved a day; missing from the day it moved to
    assert (rows, next_rows) == ([], [])
    assert [a["kind"] for a in altered] == ["next_day"] * 10
    assert sorted(a["kind"] for a in moved_in) == ["missing_row"] * 10 + ["next_day"] * 10


@over_http
def test_report_faults_are_the_same_for_the_same_seed_and_listed_in_the_report_run(sandbox: Sandbox) -> None:
    many_transactions(REPORT_DAY, 40)
    rates = {"report_missing_row_rate": 0.2, "report_extra_row_rate": 0.2, "report_amount_off_rate": 0.2}
    configure(sandbox, fault_seed="reports-a", **rates)
    first = day_report(sandbox, REPORT_DAY)
    assert first == day_report(sandbox, REPORT_DAY)
    assert first[1]
    start = int(datetime(2024, 3, 10, tzinfo=UTC).timestamp())
    run = sandbox.client.v1.reporting.report_runs.create(
        params={
            "report_type": "payout_reconciliation.itemized.5",
            "parameters": {"interval_start": start, "interval_end": start + 86400},
        }
    )
    assert run.to_dict()["sandbox_alterations"] == first[1]
    assert parse(requests.get(str(run.result.url), headers=auth(sandbox), timeout=10).text) == first[0]
    configure(sandbox, fault_seed="reports-b")
    assert day_report(sandbox, REPORT_DAY) != first
