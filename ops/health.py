"""Readiness: does every dependency answer, now? PostgreSQL (and are the migrations applied), Redis (the cache and
locks), the Celery broker, the PSP.

The checks run at once, each on its own connection with READINESS_TIMEOUT_SECONDS as its timeout, so /readyz
answers within about that time even when everything is down, and a hanging dependency cannot hold a web thread or
Django's connection. What failed is named; why is logged, not shown: /readyz is unauthenticated, and an error message
may name hosts and users.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from django.conf import settings
from django.db import connection
from django.db.migrations.loader import MigrationLoader

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    ok: bool
    ms: float
    error: str = ""  # what failed, in a few words; the details are in the log


class CheckFailed(Exception):
    """A dependency answered, and the answer is wrong (migrations missing, the PSP's server error)."""


# Threads for the checks of concurrent /readyz calls; a check stuck past its own timeouts holds one of them.
_POOL = ThreadPoolExecutor(max_workers=10, thread_name_prefix="readyz")


def readiness() -> dict[str, Check]:
    timeout = settings.READINESS_TIMEOUT_SECONDS
    futures = {name: _POOL.submit(_timed, name, check, timeout) for name, check in _CHECKS.items()}
    deadline = time.monotonic() + timeout + 1.0  # libpq rounds a connect timeout up to whole seconds
    results: dict[str, Check] = {}
    for name, future in futures.items():
        try:
            results[name] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except FutureTimeout:
            logger.warning("readiness: %s did not answer within %.1f s", name, timeout)
            results[name] = Check(ok=False, ms=timeout * 1000, error="timed out")
    # The migrations are read from the database: with the database down, they were not checked.
    if not results["database"].ok and not results["migrations"].ok:
        results["migrations"] = Check(ok=False, ms=0.0, error="not checked: the database is unavailable")
    return results


def _timed(name: str, check: Callable[[float], None], timeout: float) -> Check:
    started = time.monotonic()
    try:
        check(timeout)
    except CheckFailed as exc:
        logger.warning("readiness: %s failed: %s", name, exc)
        return Check(ok=False, ms=_ms(started), error=str(exc))
    except Exception as exc:
        logger.warning("readiness: %s failed", name, exc_info=True)
        return Check(ok=False, ms=_ms(started), error=type(exc).__name__)
    return Check(ok=True, ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _database(timeout: float) -> None:
    with _connect(timeout) as conn:
        conn.execute("SELECT 1")


def _migrations(timeout: float) -> None:
    with _connect(timeout) as conn:
        applied = set(conn.execute("SELECT app, name FROM django_migrations").fetchall())
    missing = sorted(migrations_on_disk() - applied)
    if missing:
        logger.warning("readiness: migrations not applied: %s", ", ".join(f"{app}.{name}" for app, name in missing))
        raise CheckFailed(f"{len(missing)} migrations not applied")


def _connect(timeout: float) -> psycopg.Connection[Any]:
    params = pg_params()
    # libpq takes whole seconds (at least 2); the statement timeout bounds the rest.
    params["connect_timeout"] = max(2, math.ceil(timeout))
    params["options"] = f"-c statement_timeout={int(timeout * 1000)}"
    return psycopg.connect(**params, autocommit=True)


def pg_params() -> dict[str, Any]:
    """The configured database's connection parameters, as Django connects to it."""
    params = dict(connection.get_connection_params())
    params.pop("cursor_factory", None)  # Django's and django-prometheus' cursor classes: not for a bare connection
    params.pop("context", None)
    return params


@functools.cache
def migrations_on_disk() -> frozenset[tuple[str, str]]:
    """Every migration this code ships, read once per process: it cannot change while the process runs."""
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def _redis_ping(url: str, timeout: float) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()


def _redis(timeout: float) -> None:
    _redis_ping(settings.REDIS_URL, timeout)


def _broker(timeout: float) -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://", "unix://")):
        _redis_ping(url, timeout)
        return
    from kombu import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)


def _psp(timeout: float) -> None:
    from payments.psp import payment_gateway

    payment_gateway().ping(timeout=timeout)


_CHECKS: dict[str, Callable[[float], None]] = {
    "database": _database,
    "migrations": _migrations,
    "redis": _redis,
    "broker": _broker,
    "psp": _psp,
}
