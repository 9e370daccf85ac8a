"""API throttles, counted in Redis so every web process shares them (DESIGN.md "Security": per client, buyer,
payment method and IP).

Fixed windows: one counter per dimension and window, created with its expiry and incremented in one pipeline (one
round trip per request, whatever the number of dimensions). A window's first refusal is recorded as a security event;
the refusals after it are only counted, so a flood stays cheap (it is recorded when the 429 is answered, after the
request's transaction has rolled back). If Redis does not answer, requests are not throttled
(logged): refusing every payment while Redis restarts would stop the business, and the risk check's velocity rules
and the PSP's own fraud screening still stand behind it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest

from api.errors import ApiError
from api.events import security_event_at
from audit.models import SecurityEvent
from ops.redis_client import key_prefix, redis_client

logger = logging.getLogger(__name__)


class Throttled(ApiError):
    status_code = 429
    default_code = "rate_limited"

    def __init__(self, dimension: str, retry_after: int, *, first_refusals: list[str], actor: str) -> None:
        super().__init__(f"Too many requests for this {dimension.replace('_', ' ')}; retry after {retry_after} s.")
        self.retry_after_seconds = retry_after
        self.first_refusals = first_refusals
        self.actor = actor

    def after_refusal(self, request: Any) -> None:
        # A window's first refusal only: the refusals after it are a flood, counted in metrics and nowhere else.
        for detail in self.first_refusals:
            security_event_at(request, SecurityEvent.Kind.THROTTLED, actor=self.actor, detail=detail)


def _counter(dimension: str, value: str, window: int) -> str:
    # Hashed: a payment method token or a buyer id does not belong in Redis's key space as typed.
    digest = hashlib.sha256(value.encode()).hexdigest()[:24]
    return f"{key_prefix()}:throttle:{dimension}:{digest}:{window}"


def throttle(request: HttpRequest, dimensions: dict[str, str], *, actor: str = "") -> None:
    """Count this request against each dimension's limit (e.g. {"client": "7", "ip": "10.0.0.1"}); raise Throttled
    for the one whose window ends last if any is over. Empty values are not counted."""
    limits = settings.API_THROTTLE_LIMITS
    counted = {name: value for name, value in dimensions.items() if value and limits.get(name)}
    if not counted:
        return
    seconds = settings.API_THROTTLE_WINDOW_SECONDS
    window = int(time.time()) // seconds
    keys = {name: _counter(name, value, window) for name, value in counted.items()}
    try:
        pipe = redis_client().pipeline(transaction=False)
        for key in keys.values():
            pipe.set(key, 0, ex=seconds, nx=True)
            pipe.incr(key)
        replies = pipe.execute()
    except redis.RedisError:
        logger.warning("API throttles not checked: Redis unavailable", exc_info=True)
        return
    counts = {name: int(replies[index * 2 + 1]) for index, name in enumerate(keys)}
    over = [name for name, count in counts.items() if count > limits[name]]
    if not over:
        return
    retry_after = max(1, (window + 1) * seconds - int(time.time()))
    first_refusals = [
        f"{name} over {limits[name]} requests per {seconds} s" for name in over if counts[name] == limits[name] + 1
    ]
    raise Throttled(over[0], retry_after, first_refusals=first_refusals, actor=actor)
