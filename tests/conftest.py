from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.backends.postgresql.operations import DatabaseOperations
from django.db.backends.signals import connection_created
from rest_framework.test import APIClient

from api.services import IssuedKey, api_client_create
from api.throttles import forget_local_counts
from ledger.models import AccountType, Side
from ledger.services import AccountRef, Line, journal_post
from payments.models import PaymentOrder
from payments.services import order_succeed
from reconciliation.models import Mismatch, ReconciliationRun

pytest.register_assert_rewrite("tests.sandbox")
from tests import card_scan_capture  # noqa: E402
from tests.browser_helpers import page  # noqa: E402, F401 - the browser, for every test module
from tests.sandbox import gateway, sandbox  # noqa: E402, F401 - the sandbox PSP fixtures, for every test module


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave no queue of this run behind in Redis."""
    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=2)
        names = [run_queue(name) for name in served_queues()]
        client.delete(*names, *[f"_kombu.binding.{name}" for name in names])
    except redis.RedisError:
        pass


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the whole run at once, and say why, when PostgreSQL or Redis cannot be reached. Then send every task
    this run publishes to the run's own queues."""
    try:
        psycopg.connect(**pg_params(dbname="postgres"), connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.exit(f"PostgreSQL is unreachable: {exc}", returncode=3)
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is unreachable at {settings.REDIS_URL}: {exc}", returncode=3)
    _route_tasks_to_this_run()
    # This run's cache keys (the webhook drain flag among them) are its own, whoever else uses this Redis.
    settings.CACHES["default"]["KEY_PREFIX"] = f"test-{TEST_RUN}"


if card_scan_capture.enabled():
    # make test's card-data scan reads the rows every test leaves behind, taken before the test's own teardown.
    card_scan_capture.install()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """pytest-django's test database; with the card-data scan on, dumped just before it is destroyed."""
    yield
    with django_db_blocker.unblock():
        if card_scan_capture.enabled():
            card_scan_capture.dump_database(Path(card_scan_capture.DIRECTORY))
        # An in-process Celery worker keeps its thread's connection between tasks (CELERY_DB_REUSE_MAX), and its
        # thread ends with the test without closing it: such sessions would stop the database from being dropped.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


def _allow_ledger_truncate(sender: Any, connection: Any, **kwargs: Any) -> None:
    # The ledger refuses TRUNCATE (ledger/migrations/0002); the suite's flush between transactional tests is the one
    # TRUNCATE we want, so every test connection lifts the refusal for its session.
    with connection.cursor() as cursor:
        cursor.execute("SET ledger.allow_truncate = 'on'")


connection_created.connect(_allow_ledger_truncate, dispatch_uid="tests.allow_ledger_truncate")


_truncate_all = DatabaseOperations.sql_flush


def _delete_all(
    self: DatabaseOperations, style: Any, tables: Any, *, reset_sequences: bool = False, allow_cascade: bool = False
) -> list[str]:
    """The flush between transactional tests as one DELETE per table, with triggers off for its transaction (the
    ledger's refusal and the foreign keys', whose rows all go together). TRUNCATE gave every table and index a new
    file at each of some 300 flushes: 0.3-0.6 s a flush on this machine, against 0.05 s for deleting the few rows a
    test leaves. Django runs the statements in one transaction, so SET LOCAL holds for all of them."""
    if reset_sequences or not tables:
        return _truncate_all(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    deletes = [f"DELETE FROM {self.quote_name(table)}" for table in tables]  # noqa: S608 - Django's table names
    return ["SET LOCAL session_replication_role = replica", *deletes]


DatabaseOperations.sql_flush = _delete_all  # type: ignore[method-assign]


def pg_params(**overrides: Any) -> dict[str, Any]:
    """psycopg connection parameters of the configured database, for a session of a test's own beside Django's."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.update(overrides)
    return params


@pytest.fixture(autouse=True)
def _forget_known_rows() -> None:
    """Services remember sellers, wallets and ledger accounts they saw committed, which holds because those rows are
    never deleted. Tests that commit then flush the database do delete them, so each test starts with no memory."""
    from ledger import services as ledger_services
    from wallets import services as wallet_services

    wallet_services._known_sellers.clear()
    wallet_services._known_wallets.clear()
    ledger_services._known_accounts.clear()


@pytest.fixture(autouse=True)
def _velocity_out_of_the_way(settings: Any) -> None:
    """Every test pays with the sandbox's shared test payment methods, so velocity and throttles per payment method
    would refuse payments across tests. The tests that check them set their own limits; counts start empty per
    test (the security events' sampling counts too)."""
    settings.RISK_VELOCITY_LIMIT = 1_000_000
    settings.API_THROTTLE_LIMITS = dict.fromkeys(settings.API_THROTTLE_LIMITS, 1000000)
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    forget_local_counts()
    for pattern in ("risk", "throttle", "security"):
        stale = list(client.scan_iter(match=f"{prefix}:{pattern}:*", count=1000))
        if stale:
            client.delete(*stale)


_sequence = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def payment_body(**overrides: Any) -> dict[str, Any]:
    """A valid POST /v1/payments body with fresh payment_order_ids; keyword arguments replace top-level fields."""
    n = next(_sequence)
    body: dict[str, Any] = {
        "checkout_id": f"chk_{n}",
        "buyer_info": {"id": "buyer_42", "email": "ann@example.com", "country": "DE"},
        "payment_method": {"token": "pm_card_visa"},
        "payment_orders": [
            {"payment_order_id": unique("po"), "seller_account": "seller_7", "amount": "19.99", "currency": "EUR"},
            {"payment_order_id": unique("po"), "seller_account": "seller_9", "amount": "5.00", "currency": "EUR"},
        ],
    }
    body.update(overrides)
    return body


def order(**overrides: Any) -> dict[str, Any]:
    item = {"payment_order_id": unique("po"), "seller_account": "seller_7", "amount": "10.00", "currency": "EUR"}
    item.update(overrides)
    return item


def captured_order(post_payment: Callable[..., Any], seller: str, amount: str = "100.00") -> PaymentOrder:
    """A one-order payment captured through the service the executor uses on the PSP's success, with no PSP: the
    order is SUCCESS with a fresh pi_ reference, and its pay-in is posted to the ledger and the seller's wallet."""
    created = post_payment(payment_body(payment_orders=[order(seller_account=seller, amount=amount)])).json()
    order_id = created["payment_orders"][0]["payment_order_id"]
    order_start = PaymentOrder.objects.get(payment_order_id=order_id)
    order_start.start_execution(actor="test")
    order_start.save()
    return order_succeed(payment_order_id=order_id, psp_reference=unique("pi"), actor="test")


def unplaced_finding(reference: str, *, category: str = "unclassifiable", status: str = "open") -> Mismatch:
    """A finding of 2.50 EUR the PSP paid and nobody could place, held in suspense as the nightly run holds it: the
    day's settlement posted it there, and a run of 2026-11-01 found it."""
    run, _ = ReconciliationRun.objects.get_or_create(psp="stripe", settlement_date=date(2026, 11, 1), source="upload")
    journal_post(
        kind="settlement",
        reference=f"test:{reference}",
        lines=[
            Line(AccountRef("bank:EUR", AccountType.ASSET, "EUR"), Side.DEBIT, 250),
            Line(AccountRef("suspense:EUR", AccountType.ASSET, "EUR"), Side.CREDIT, 250),
        ],
        actor="test",
    )
    return Mismatch.objects.create(
        psp="stripe",
        natural_key=f"line:{reference}",
        run=run,
        category=category,
        status=status,
        currency="EUR",
        psp_amount=250,
        difference=250,
        reference=reference,
    )


@pytest.fixture
def issued_key(db: None) -> IssuedKey:
    return api_client_create(name=unique("shop"))


@pytest.fixture
def make_api() -> Callable[[str | None], APIClient]:
    def make(key: str | None) -> APIClient:
        client = APIClient()
        if key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make


@pytest.fixture
def api(issued_key: IssuedKey, make_api: Callable[[str | None], APIClient]) -> APIClient:
    return make_api(issued_key.key)


@pytest.fixture
def post_payment(api: APIClient) -> Callable[..., Any]:
    def post(body: Any, *, key: str | None = "auto", client: APIClient | None = None, raw: bytes | None = None) -> Any:
        headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": unique("idem") if key == "auto" else key}
        content = raw if raw is not None else json.dumps(body)
        return (client or api).post("/v1/payments", data=content, content_type="application/json", **headers)

    return post


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture
def row_counts() -> Callable[[], dict[str, int]]:
    """Counts of every table a payment request may write, to prove that a refused request wrote nothing."""
    from api.models import IdempotencyKey
    from payments.models import OrderTransition, PaymentEvent, PaymentOrder
    from wallets.models import Seller

    def counts() -> dict[str, int]:
        return {
            model.__name__: model.objects.count()
            for model in (PaymentEvent, PaymentOrder, OrderTransition, IdempotencyKey, Seller)
        }

    return counts


TEST_RUN = uuid.uuid4().hex[:8]


def run_queue(name: str) -> str:
    """This test run's own copy of a queue: a `make run` worker, or another run's, never takes its messages."""
    return f"{name}.test-{TEST_RUN}"


def served_queues() -> list[str]:
    """Every queue the project's tasks are routed to: what the Procfile's worker must serve."""
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE} | {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()})


def _route_tasks_to_this_run() -> None:
    from config.celery import app

    def router(name: str, *args: Any, **kwargs: Any) -> dict[str, str]:
        route = settings.CELERY_TASK_ROUTES.get(name, {"queue": settings.CELERY_TASK_DEFAULT_QUEUE})
        return {"queue": run_queue(route["queue"])}

    app.conf.task_routes = (router,)
    app.conf.task_default_queue = run_queue(settings.CELERY_TASK_DEFAULT_QUEUE)


@pytest.fixture
def celery_worker_app() -> Iterator[Any]:
    """The project's Celery app with a real worker thread consuming this run's queues from Redis, and the execution
    relay that queues the executor for committed orders.

    The queues are emptied first: tasks published by earlier tests (which ran no worker) would otherwise run now,
    against rows those tests no longer have.
    """
    from celery.contrib.testing.worker import start_worker

    from config.celery import app
    from payments.webhooks import _DRAIN_QUEUED

    queues = [run_queue(name) for name in served_queues()]
    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)
    # A drain queued by an earlier test went with its queue: its flag must go too, or no drain is queued for a while.
    cache.delete(_DRAIN_QUEUED)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=queues), running_relay():
        yield app


@contextmanager
def running_relay() -> Iterator[None]:
    """The execution relay (payments/relay.py) in a thread, on the test database: committed orders get executed."""
    from payments.relay import relay_run

    stop = threading.Event()
    thread = threading.Thread(target=relay_run, kwargs={"stop": stop, "dsn_params": pg_params()}, daemon=True)
    thread.start()
    # Until it LISTENs, an order committed meanwhile is published by its catch-up instead, without the request id of
    # the payment that created it: the tests wait, as a deployment starts the relay before taking traffic.
    wait_until(_relay_listening)
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _relay_listening() -> bool:
    from django.db import connection

    from payments.services import EXECUTIONS_CHANNEL

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = %s AND pid <> pg_backend_pid())",
            [f"LISTEN {EXECUTIONS_CHANNEL}"],
        )
        return bool(cursor.fetchone()[0])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so that a fixture can tell in its teardown whether the test failed
    (the browser tests take a screenshot then)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
