"""Every periodic job, in one place. Each entry says when it runs and why."""

from __future__ import annotations

from celery.schedules import crontab
from django.conf import settings

BEAT_SCHEDULE = {
    # Every minute: re-drive orders whose task was lost, look UNKNOWN and old PENDING orders up at the PSP, close
    # dead letters whose order is done, raise the in-flight alert (payments/recovery.py).
    "recovery-sweep": {
        "task": "payments.recovery_sweep",
        "schedule": 60.0,
    },
    # Webhook events are drained as they arrive; this catches what a lost task or flag left waiting, and retries
    # failed events whose backoff has passed.
    "drain-webhook-inbox": {
        "task": "payments.webhook_events_drain",
        "schedule": 60.0,
    },
    # Idempotency keys promise a replay for 24 hours and nothing after; purging hourly keeps the table (and its
    # unique index, which every POST touches) small.
    "purge-expired-idempotency-keys": {
        "task": "api.idempotency_keys_purge",
        "schedule": crontab(minute=17),
    },
    # Nightly at 00:20 UTC, once yesterday is over: its entries are rolled up per account (ledger/models.py, "Closed
    # days"), so that balances and the trial balance sum one day's entries, not a year's. A missed night is caught
    # up by the next one; the balances are exact either way.
    "ledger-days-close": {
        "task": "ledger.days_close",
        "schedule": crontab(hour=0, minute=20),
    },
    # Nightly at 01:30 UTC: the ledger sums to zero per currency, every wallet equals its ledger accounts, every
    # captured order has its one pay-in (DESIGN.md "Reconciliation"). At night because it reads whole tables on one
    # held snapshot; a violation is logged at ERROR and kept for the finance console, seen at the start of the day.
    "ledger-check": {
        "task": "reconciliation.ledger_check",
        "schedule": crontab(hour=1, minute=30),
    },
    # Nightly, RECONCILIATION_HOUR UTC: yesterday's settlement file of every PSP against our books
    # (reconciliation/runs.py); a failed run retries every 10 minutes, three times.
    "settlement-reconciliation": {
        "task": "reconciliation.nightly",
        "schedule": crontab(hour=settings.RECONCILIATION_HOUR, minute=0),
    },
    # Hourly: seller funds whose hold period (FUNDS_HOLD_DAYS) has passed become available, for orders whose
    # delivery the storefront never confirmed (payments/releases.py).
    "release-held-funds": {
        "task": "payments.funds_release_due",
        "schedule": crontab(minute=7),
    },
    # Monthly, on the 1st at 02:00 UTC, after the ledger check: one payout per seller and currency for the available
    # balance above PAYOUT_MINIMUM (payments/payouts.py). Two runs at once pay each seller once.
    "monthly-payout-run": {
        "task": "payments.payout_run",
        "schedule": crontab(day_of_month=1, hour=2, minute=0),
    },
}
