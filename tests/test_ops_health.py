"""/healthz and /readyz: liveness asks nothing of anyone; readiness names each dependency that does not answer.

Redis is stopped for real: the test runs a Redis server of its own (bench/processes.py) and points the settings at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from bench.processes import RedisServer
from ops import health
from tests.sandbox import Sandbox

ALL = ["database", "migrations", "redis", "broker", "psp"]


def test_healthz_answers_without_touching_any_dependency(client: Client) -> None:
    # no database access is allowed in this test: pytest-django would fail it
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


@pytest.fixture
def own_redis(settings: Any) -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    settings.REDIS_URL = server.url
    settings.CELERY_BROKER_URL = server.url
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def psp(sandbox: Sandbox, settings: Any) -> Sandbox:
    settings.STRIPE_API_BASE = sandbox.url
    return sandbox


def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.json()


@pytest.mark.django_db
def test_readyz_is_ready_when_every_dependency_answers(client: Client, psp: Sandbox, own_redis: RedisServer) -> None:
    status, body = readyz(client)

    assert status == 200
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert sorted(body["checks"]) == sorted(ALL)
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db
def test_readyz_names_redis_and_the_broker_while_redis_is_stopped(
    client: Client, psp: Sandbox, own_redis: RedisServer
) -> None:
    # when the Redis server (cache and broker) stops
    own_redis.kill()
    status, body = readyz(client)

    # then readiness fails and says which dependencies, and only those
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["failed"] == ["redis", "broker"]
    assert body["checks"]["redis"]["error"] == "ConnectionError"
    assert body["checks"]["database"]["ok"] is True

    # and when it is back, so is readiness
    own_redis.start()
    assert readyz(client)[0] == 200


@pytest.mark.django_db
def test_readyz_names_the_psp_when_it_cannot_be_reached(client: Client, settings: Any, own_redis: RedisServer) -> None:
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there

    status, body = readyz(client)

    assert status == 503
    assert body["failed"] == ["psp"]


@pytest.mark.django_db
def test_readyz_names_the_database_and_leaves_the_migrations_unchecked_when_it_is_down(
    client: Client, psp: Sandbox, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = health.pg_params()
    monkeypatch.setattr(health, "pg_params", lambda: {**params, "host": "127.0.0.1", "port": 9})

    status, body = readyz(client)

    assert status == 503
    assert body["failed"] == ["database", "migrations"]
    assert body["checks"]["migrations"]["error"] == "not checked: the database is unavailable"


@pytest.mark.django_db
def test_readyz_names_the_migrations_when_one_is_not_applied(
    client: Client, psp: Sandbox, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given code that ships a migration the database has not had
    shipped = health.migrations_on_disk() | {("payments", "9999_not_applied_yet")}
    monkeypatch.setattr(health, "migrations_on_disk", lambda: shipped)

    status, body = readyz(client)

    assert status == 503
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"]["error"] == "1 migrations not applied"
