from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from reconciliation.runs import reconciliation_run
from reconciliation.services import ledger_check_run


# The checks read whole tables: give them more than the default minute, but finish well inside the broker's
# visibility timeout (an hour), or Redis would hand the unacknowledged message to a second worker mid-run.
@shared_task(name="reconciliation.ledger_check", soft_time_limit=25 * 60, time_limit=30 * 60)
def ledger_check() -> int:
    return ledger_check_run(actor="celery:reconciliation.ledger_check").pk


@shared_task(
    name="reconciliation.nightly",
    bind=True,
    max_retries=3,
    soft_time_limit=25 * 60,
    time_limit=30 * 60,
)
def nightly(self: Any, settlement_date: str | None = None) -> dict[str, str]:
    """Reconcile yesterday (UTC) for every PSP in RECONCILIATION_PSPS. A run that fails is retried after 10 minutes
    (the PSP's report may not be ready); its failure is logged at ERROR and stays on the run for the console."""
    day = date.fromisoformat(settlement_date) if settlement_date else timezone.now().date() - timedelta(days=1)
    outcomes = {}
    failed = False
    for psp in settings.RECONCILIATION_PSPS:
        try:
            outcomes[psp] = reconciliation_run(
                settlement_date=day, psp=psp, actor="celery:reconciliation.nightly"
            ).status
        except Exception as exc:  # every PSP gets its run; the failure is on the run row and in the log
            outcomes[psp] = f"failed: {exc}"
            failed = True
    if failed:
        raise self.retry(countdown=600, kwargs={"settlement_date": day.isoformat()})
    return outcomes
