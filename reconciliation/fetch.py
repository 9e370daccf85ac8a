"""Fetching a settlement file from the PSP: Stripe's Reporting API (a report run of the itemized payout
reconciliation report for one UTC day, then its file), the same calls for real Stripe and the sandbox."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import IO

import requests
import stripe
from django.conf import settings

from payments.psp.stripe import stripe_client

REPORT_TYPE = "payout_reconciliation.itemized.5"
POLL_SECONDS = 1.0


class SettlementReportUnavailable(Exception):
    """The PSP did not produce the report: the run fails, and beat's retry or a person tries again."""


def settlement_report_open(*, settlement_date: date, timeout: float = 300.0) -> tuple[IO[bytes], str]:
    """A stream of the day's report and its file name. The caller reads it once and closes it."""
    client = stripe_client()
    start = datetime.combine(settlement_date, datetime.min.time(), tzinfo=UTC)
    try:
        run = client.v1.reporting.report_runs.create(
            {
                "report_type": REPORT_TYPE,
                "parameters": {
                    "interval_start": int(start.timestamp()),
                    "interval_end": int((start + timedelta(days=1)).timestamp()),
                },
            }
        )
        deadline = time.monotonic() + timeout
        while run.status == "pending":
            if time.monotonic() > deadline:
                raise SettlementReportUnavailable(f"report run {run.id} still pending after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
            run = client.v1.reporting.report_runs.retrieve(run.id)
    except stripe.StripeError as exc:
        raise SettlementReportUnavailable(f"the PSP refused the report run: {exc}") from exc
    if run.status != "succeeded" or run.result is None or not run.result.url:
        raise SettlementReportUnavailable(f"report run {run.id} ended {run.status}: {run.error or 'no file'}")
    response = requests.get(
        run.result.url, auth=(settings.STRIPE_API_KEY, ""), stream=True, timeout=settings.STRIPE_TIMEOUT_SECONDS
    )
    if response.status_code != 200:
        raise SettlementReportUnavailable(f"the report file answered {response.status_code}")
    response.raw.decode_content = True
    return response.raw, run.result.filename or f"{REPORT_TYPE}-{settlement_date}.csv"
