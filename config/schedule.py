"""Every periodic job, in one place. Each entry says when it runs and why."""

from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Idempotency keys promise a replay for 24 hours and nothing after; purging hourly keeps the table (and its
    # unique index, which every POST touches) small.
    "purge-expired-idempotency-keys": {
        "task": "api.idempotency_keys_purge",
        "schedule": crontab(minute=17),
    },
}
