"""A Celery worker keeps its database connections between tasks, as a web process keeps them between requests.

Celery's Django fixup closes every connection before and after every task unless CELERY_DB_REUSE_MAX is set, and a
new PostgreSQL connection per task cost more than most tasks' work (bench-e2e). The fixup here is Celery's own,
driven through a task's start and end as a worker drives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from celery import signals
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from config.celery import app
from payments.tasks import order_execute
from tests.conftest import pg_params

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker_fixup() -> DjangoWorkerFixup:
    return DjangoWorkerFixup(app)


@pytest.fixture
def task_in_worker() -> Iterator[Any]:
    order_execute.push_request(id="task-1", is_eager=False)
    yield order_execute
    order_execute.pop_request()


def run_task_lifecycle(fixup: DjangoWorkerFixup, task: Any) -> None:
    """What a worker does around a task: Celery's fixup and the project's handlers, before and after."""
    fixup.on_task_prerun(sender=task)
    signals.task_prerun.send(sender=task, task_id="task-1", task=task, args=[], kwargs={})
    fixup.on_task_postrun(sender=task)
    signals.task_postrun.send(sender=task, task_id="task-1", task=task, args=[], kwargs={}, retval=None)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_worker_thread_keeps_its_connection_from_one_task_to_the_next(
    worker_fixup: DjangoWorkerFixup, task_in_worker: Any
) -> None:
    before = backend_pid()

    for _ in range(3):
        run_task_lifecycle(worker_fixup, task_in_worker)

    assert connection.connection is not None
    assert backend_pid() == before


def test_without_the_setting_celery_would_reconnect_for_every_task(
    worker_fixup: DjangoWorkerFixup, task_in_worker: Any
) -> None:
    # The behaviour the setting turns off, shown so that this test fails if Celery's fixup changes under us.
    worker_fixup.db_reuse_max = None
    before = backend_pid()

    run_task_lifecycle(worker_fixup, task_in_worker)

    assert connection.connection is None
    assert backend_pid() != before


def test_a_connection_left_broken_by_a_task_is_replaced_before_the_next(
    worker_fixup: DjangoWorkerFixup, task_in_worker: Any
) -> None:
    # A task that ended with an error on a connection PostgreSQL has since dropped (a restart, a failover).
    before = backend_pid()
    _terminate(before)
    connection.errors_occurred = True

    run_task_lifecycle(worker_fixup, task_in_worker)

    assert backend_pid() != before


def _terminate(pid: int) -> None:
    with psycopg.connect(**pg_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
