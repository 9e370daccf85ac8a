from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.conf import settings

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
    this minute: a flood of forged requests must not become a flood of writes. Every event is counted in metrics.

    Joins the caller's transaction. If Redis does not answer, the event is recorded: losing the sample limit for a
    while is better than losing the trail."""
    security_events_total.labels(kind).inc()
    source = ip or actor or "unknown"
    window = int(time.time()) // 60
    counter = f"{key_prefix()}:security:{kind}:{source}:{window}"
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        seen = int(pipe.execute()[0])
    except redis.RedisError:
        logger.warning("security events not sampled: Redis unavailable", exc_info=True)
        seen = 0
    logger.warning("security event", extra={"kind": kind, "actor": actor, "ip": ip, "path": path})
    if seen > settings.SECURITY_EVENTS_PER_SOURCE_PER_MINUTE:
        return None
    return SecurityEvent.objects.create(
        kind=kind, actor=actor[:150], ip=ip or None, path=path[:255], detail=detail[:2000]
    )
