from __future__ import annotations

from celery import shared_task

from ledger.services import ledger_days_close


@shared_task(name="ledger.days_close", soft_time_limit=10 * 60, time_limit=15 * 60)
def days_close() -> str | None:
    closed = ledger_days_close()
    return closed.isoformat() if closed else None
