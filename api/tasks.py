from __future__ import annotations

from celery import shared_task

from api.idempotency import idempotency_keys_purge


@shared_task(name="api.idempotency_keys_purge")
def purge_expired_idempotency_keys() -> int:
    return idempotency_keys_purge()
