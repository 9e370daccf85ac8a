from __future__ import annotations

from celery import shared_task

from reconciliation.services import ledger_check_run


# The checks read whole tables: give them more than the default minute, but finish well inside the broker's
# visibility timeout (an hour), or Redis would hand the unacknowledged message to a second worker mid-run.
@shared_task(name="reconciliation.ledger_check", soft_time_limit=25 * 60, time_limit=30 * 60)
def ledger_check() -> int:
    return ledger_check_run(actor="celery:reconciliation.ledger_check").pk
