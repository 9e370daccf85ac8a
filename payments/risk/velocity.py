"""How many payments a buyer, a payment method or an IP address made within the velocity window, counted in Redis.

Each dimension's window is a Redis set of payment ids, per fixed time bucket, expiring by itself: adding the same
payment twice (a retried execution, the sweep) counts it once, and reading it is one pipeline per order. If Redis
does not answer, velocity is not checked for that order (logged): holding every payment while Redis restarts would
stop the business for a check that the other rules and the PSP's own fraud screening back up.
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

from ops.redis_client import key_prefix, redis_client

logger = logging.getLogger(__name__)


def velocity_counts(*, payment_id: str, dimensions: dict[str, str]) -> dict[str, int] | None:
    """Payments per dimension (e.g. {"buyer": "b_1", "ip": "1.2.3.4"}) in the current window, this one included.
    None when Redis is unreachable."""
    window = settings.RISK_VELOCITY_WINDOW_SECONDS
    bucket = int(time.time()) // window
    keys = {name: f"{key_prefix()}:risk:{name}:{value}:{bucket}" for name, value in dimensions.items()}
    try:
        pipe = redis_client().pipeline(transaction=False)
        for key in keys.values():
            pipe.sadd(key, payment_id)
            pipe.expire(key, window * 2)
            pipe.scard(key)
        replies = pipe.execute()
    except redis.RedisError:
        logger.warning("velocity not checked: Redis unavailable", extra={"payment_id": payment_id}, exc_info=True)
        return None
    return {name: int(replies[index * 3 + 2]) for index, name in enumerate(keys)}
