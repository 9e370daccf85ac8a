from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from typing import Any

import redis
from django.conf import settings

from api.carddata import mask_card_numbers
from audit.models import AuditEntry, SecurityEvent
from ops.metrics import security_events_total
from ops.redis_client import key_prefix, redis_client

logger = logging.getLogger(__name__)


def audit_record(
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record one action. Joins the caller's transaction: the action and its record commit together or not at all."""
    return AuditEntry.objects.create(
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        reason=reason,
        details=details or {},
    )


def security_event_record(
    *, kind: str, actor: str = "", ip: str | None = None, path: str = "", detail: str = ""
) -> SecurityEvent | None:
    """Record a security event, unless this source already had SECURITY_EVENTS_PER_SOURCE_PER_MINUTE of this kind
    this minute, or the kind SECURITY_EVENTS_PER_KIND_PER_MINUTE from all sources: a flood of forged requests, from
    one address or a botnet, must not become a flood of rows in a table nothing may delete from. Every event is
    counted in metrics.

    What the caller sent (the path, a user name) is stored with anything card-like masked: the table is append-only,
    so a card number written there could never be removed.

    Joins the caller's transaction. If Redis does not answer, the event is recorded: losing the sample limit for a
    while is better than losing the trail."""
    security_events_total.labels(kind).inc()
    actor, path, detail = mask_card_numbers(actor), mask_card_numbers(path), mask_card_numbers(detail)
    window = int(time.time()) // 60
    source = hashlib.sha256(_source(ip, actor).encode()).hexdigest()[:24]
    per_source = f"{key_prefix()}:security:{kind}:{source}:{window}"
    per_kind = f"{key_prefix()}:security:{kind}:*:{window}"
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(per_source)
        pipe.expire(per_source, 120)
        pipe.incr(per_kind)
        pipe.expire(per_kind, 120)
        replies = pipe.execute()
        from_source, of_kind = int(replies[0]), int(replies[2])
    except redis.RedisError:
        logger.warning("security events not sampled: Redis unavailable", exc_info=True)
        from_source = of_kind = 0
    logger.warning("security event", extra={"kind": kind, "actor": actor, "ip": ip, "path": path})
    if (
        from_source > settings.SECURITY_EVENTS_PER_SOURCE_PER_MINUTE
        or of_kind > settings.SECURITY_EVENTS_PER_KIND_PER_MINUTE
    ):
        return None
    return SecurityEvent.objects.create(
        kind=kind, actor=actor[:150], ip=ip or None, path=path[:255], detail=detail[:2000]
    )


def _source(ip: str | None, actor: str) -> str:
    """Who to sample by: the address, an IPv6 one by its /64 (what one machine is usually given, so rotating
    addresses inside it is still one source), else the actor."""
    if not ip:
        return f"actor:{actor}"
    address = ipaddress.ip_address(ip)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
