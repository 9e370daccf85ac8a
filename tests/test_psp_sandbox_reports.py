"""Settlement reports: a Reporting API run through stripe-python, its File and CSV contents, the plain daily
settlement report, amounts in major units by each currency's exponent, and streaming of a big day."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import requests
import stripe
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from psp_sandbox import reports
from psp_sandbox.knobs import Config
from psp_sandbox.models import BalanceTransaction
from psp_sandbox.money import exponent
from tests.psp_helpers import auth, get, intent_params

if TYPE_CHECKING:
    from tests.sandbox import Sandbox

over_http = pytest.mark.django_db(transaction=True)


def settles_on() -> date:
    """The day today's transactions become available (two days on, psp_sandbox/balance.py)."""
    return timezone.now().astimezone(UTC).date() + timedelta(days=2)


def unix_day(day: date) -> int:
    return int(datetime.combine(day, time.min, tzinfo=UTC).timestamp())


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def activity(sandbox: Sandbox) -> dict[str, str]:
    """A day's activity: three payments in EUR, JPY and KWD, a partial refund, a transfer."""
    eur = sandbox.client.v1.payment_intents.create(
        params=intent_params(metadata={"payment_order_id": "po_1", "payment_id": "pay_1", "checkout_id": "chk_1"})
    )
    jpy = sandbox.client.v1.payment_intents.create(params=intent_params(amount=5000, currency="jpy"))
    kwd = sandbox.client.v1.payment_intents.create(params=intent_params(amount=1234, currency="kwd"))
    refund = sandbox.client.v1.refunds.create(
        params={"payment_intent": eur.id, "amount": 500, "metadata": {"refund_id": "rf_1"}}
    )
    transfer = sandbox.client.v1.transfers.create(
        params={"amount": 700, "currency": "eur", "destination": "acct_1Seller", "metadata": {"payout_id": "pout_1"}}
    )
    return {
        "eur": str(eur.latest_charge),
        "eur_intent": eur.id,
        "jpy": str(jpy.latest_charge),
        "kwd": str(kwd.latest_charge),
        "refund": refund.id,
        "transfer": transfer.id,
    }


@over_http
def test_a_report_run_succeeds_with_a_file_whose_csv_has_stripes_columns(
    sandbox: Sandbox, activity: dict[str, str]
) -> None:
    # given
    day = settles_on()
    # when
    run = sandbox.client.v1.reporting.report_runs.create(
        params={
            "report_type": "payout_reconciliation.itemized.5",
            "parameters": {"interval_start": unix_day(day), "interval_end": unix_day(day + timedelta(days=1))},
        }
    )
    # then
    assert run.id.startswith("frr_")
    assert (run.status, run.report_type, run.result.purpose, run.result.type) == (
        "succeeded",
        "payout_reconciliation.itemized.5",
        "finance_report_run",
        "csv",
    )
    assert run.result.url == f"{sandbox.url}/v1/files/{run.result.id}/contents"
    assert sandbox.client.v1.reporting.report_runs.retrieve(run.id).result.id == run.result.id
    assert sandbox.client.v1.files.retrieve(run.result.id).size == run.result.size
    response = requests.get(str(run.result.url), headers=auth(sandbox), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert len(response.content) == run.result.size
    header = next(csv.reader(io.StringIO(response.text)))
    assert header == list(reports.COLUMNS)
    by_source = {row["source_id"]: row for row in parse(response.text)}
    assert len(by_source) == 5
    eur = by_source[activity["eur"]]
    assert (eur["currency"], eur["gross"], eur["fee"], eur["net"], eur["reporting_category"]) == (
        "eur",
        "19.99",
        "0.88",
        "19.11",
        "charge",
    )
    assert (eur["payment_intent_id"], eur["card_brand"], eur["payment_method_type"]) == (
        activity["eur_intent"],
        "visa",
        "card",
    )
    assert (eur["payment_metadata[payment_order_id]"], eur["payment_metadata[checkout_id]"]) == ("po_1", "chk_1")
    assert eur["available_on"] == f"{day.isoformat()} 00:00:00"
    assert eur["created_utc"] == eur["created"]
    assert eur["automatic_payout_id"].startswith("po_")
    assert (by_source[activity["jpy"]]["gross"], by_source[activity["jpy"]]["currency"]) == ("5000", "jpy")
    assert by_source[activity["kwd"]]["gross"] == "1.234"
    refund = by_source[activity["refund"]]
    assert (refund["gross"], refund["net"], refund["reporting_category"], refund["charge_id"]) == (
        "-5.00",
        "-5.00",
        "refund",
        activity["eur"],
    )
    assert refund["refund_metadata[refund_id]"] == "rf_1"
    transfer = by_source[activity["transfer"]]
    assert (transfer["gross"], transfer["connected_account_id"], transfer["transfer_metadata[payout_id]"]) == (
        "-7.00",
        "acct_1Seller",
        "pout_1",
    )
    # the same bytes again, and from the daily settlement report
    assert requests.get(str(run.result.url), headers=auth(sandbox), timeout=10).content == response.content
    daily = get(sandbox, "/v1/sandbox/settlement_report", date=day.isoformat())
    assert daily.text == response.text


@over_http
def test_a_balance_change_report_takes_the_activity_created_in_the_interval_with_chosen_columns(
    sandbox: Sandbox, activity: dict[str, str]
) -> None:
    now = int(timezone.now().timestamp())
    run = sandbox.client.v1.reporting.report_runs.create(
        params={
            "report_type": "balance_change_from_activity.itemized.3",
            "parameters": {
                "interval_start": now - 3600,
                "interval_end": now + 60,
                "columns": ["balance_transaction_id", "gross", "currency"],
                "currency": "eur",
            },
        }
    )
    text = requests.get(str(run.result.url), headers=auth(sandbox), timeout=10).text
    rows = parse(text)
    assert text.splitlines()[0] == "balance_transaction_id,gross,currency"
    assert sorted(row["gross"] for row in rows) == ["-5.00", "-7.00", "19.99"]


@over_http
@pytest.mark.parametrize(
    ("parameters", "param"),
    [
        ({"interval_start": 100}, "parameters[interval_end]"),
        ({"interval_start": 200, "interval_end": 100}, "parameters[interval_end]"),
        ({"interval_start": 1, "interval_end": 2, "columns": ["colour"]}, "parameters[columns][0]"),
        ({"interval_start": 1, "interval_end": 2, "timezone": "Europe/Berlin"}, "parameters[timezone]"),
    ],
)
def test_report_runs_stripe_would_refuse_are_400s(sandbox: Sandbox, parameters: dict[str, object], param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        sandbox.client.v1.reporting.report_runs.create(
            params={"report_type": "payout_reconciliation.itemized.5", "parameters": parameters}  # type: ignore[typeddict-item]
        )
    assert caught.value.param == param


@over_http
def test_file_contents_need_the_api_key_and_a_known_file(sandbox: Sandbox) -> None:
    assert requests.get(f"{sandbox.url}/v1/files/file_x/contents", timeout=10).status_code == 401
    assert get(sandbox, "/v1/files/file_x/contents").status_code == 404
    assert get(sandbox, "/v1/sandbox/settlement_report", date="yesterday").status_code == 400


def many_transactions(day: date, count: int) -> dict[str, int]:
    """``count`` charge-like balance transactions settling on ``day``, written straight to the table; returns the
    gross per currency in minor units."""
    rng = random.Random(7)
    created = datetime.combine(day - timedelta(days=2), time(9), tzinfo=UTC)
    totals: dict[str, int] = defaultdict(int)
    rows = []
    for index in range(count):
        currency = ("eur", "jpy", "kwd")[index % 3]
        amount = rng.randint(50, 500_000)
        totals[currency] += amount
        rows.append(
            BalanceTransaction(
                id=f"txn_bulk{index:08d}",
                amount=amount,
                fee=amount // 40,
                net=amount - amount // 40,
                currency=currency,
                available_on=datetime.combine(day, time.min, tzinfo=UTC),
                source=f"ch_bulk{index:08d}",
                created=created + timedelta(milliseconds=index),
            )
        )
    BalanceTransaction.objects.bulk_create(rows, batch_size=1000)
    return dict(totals)


@over_http
def test_a_big_day_streams_and_its_sums_match_the_balance_transactions(sandbox: Sandbox) -> None:
    # given
    day = date(2024, 1, 15)
    totals = many_transactions(day, 3000)
    # when
    response = requests.get(
        f"{sandbox.url}/v1/sandbox/settlement_report",
        params={"date": day.isoformat()},
        headers=auth(sandbox),
        stream=True,
        timeout=30,
    )
    chunks = list(response.iter_content(chunk_size=None))
    # then: sent as it was written, in pieces, with no length known up front
    assert response.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.headers
    assert len(chunks) > 3
    rows = parse(b"".join(chunks).decode())
    assert len(rows) == 3000
    assert [row["balance_transaction_id"] for row in rows] == [f"txn_bulk{i:08d}" for i in range(3000)]
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        sums[row["currency"]] += Decimal(row["gross"])
    assert sums == {currency: Decimal(total).scaleb(-exponent(currency)) for currency, total in totals.items()}


@pytest.mark.django_db
def test_the_report_reads_a_chunk_of_rows_at_a_time() -> None:
    # given
    day = date(2024, 2, 1)
    many_transactions(day, 2500)
    start, end = reports.day_bounds(day)
    spec = reports.spec_for(
        report_type=reports.PAYOUT_RECONCILIATION,
        start=start,
        end=end,
        now=timezone.now(),
        config=Config(**{**_defaults()}),
    )
    # when: the first row
    with CaptureQueriesContext(connection) as first:
        rows = reports.rows(spec)
        next(rows)
    # then: one page of balance transactions (LIMIT 1000) and the objects behind it, not the whole day
    assert len(first.captured_queries) <= 6
    assert f"LIMIT {reports.CHUNK_ROWS}" in first.captured_queries[0]["sql"]
    with CaptureQueriesContext(connection) as rest:
        assert sum(1 for _ in rows) == 2499
    assert len(rest.captured_queries) >= 2 * len(first.captured_queries)


def _defaults() -> dict[str, object]:
    from psp_sandbox.knobs import KNOBS

    return {knob.name: knob.default for knob in KNOBS}
