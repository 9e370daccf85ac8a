"""One Redis connection pool per process for the counters kept outside the cache: risk velocity, API throttles,
security-event sampling. Short timeouts: each caller decides what an unreachable Redis means for it."""

from __future__ import annotations

import functools

import redis
from django.conf import settings


@functools.lru_cache(maxsize=1)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def redis_client() -> redis.Redis:
    return _client(settings.REDIS_URL)


def key_prefix() -> str:
    """The cache's key prefix, so that two deployments (or a test run and `make run`) sharing a Redis stay apart."""
    return str(settings.CACHES["default"].get("KEY_PREFIX", ""))
