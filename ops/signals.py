"""The log context across Celery: a task runs with the request id (and payment ids) of whoever queued it.

The publisher's context travels in the message's headers (``before_task_publish``), never in the task's arguments,
so no task signature changes and a message queued before a deploy still runs. The worker binds it before the task
runs (``task_prerun``), plus the id of the object the task is for (its ``log_context`` attribute names the field,
payments/tasks.py), and drops it afterwards (``task_postrun``): a worker thread runs one task after another.
A task nobody's request queued (beat's, the sweep's) gets a request id of its own, so its lines still group.

Connected from config/celery.py, in every process that loads the Celery app (web, worker, beat, relay).
"""

from __future__ import annotations

from typing import Any

from ops import context

HEADER = "marketpay_log_context"

# The fields that travel with a task; the Celery task's own name and id are the worker's to set.
_TRAVELLING = ("request_id", "payment_id", "payment_order_id", "refund_id", "payout_id")


def on_before_task_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None:
        return
    fields = {name: value for name, value in context.current().items() if name in _TRAVELLING}
    if fields:
        headers[HEADER] = fields


def on_task_prerun(task_id: str | None = None, task: Any = None, args: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    # Protocol 2 makes every message header an attribute of the task's request.
    inherited = getattr(request, HEADER, None) or {}
    fields = {name: str(value) for name, value in inherited.items() if name in _TRAVELLING and value}
    fields.setdefault("request_id", context.new_request_id())
    own_field = getattr(task, "log_context", None)
    if own_field and args:
        fields[own_field] = str(args[0])
    context.clear()  # whatever an earlier task on this thread left, should its postrun not have run
    context.bind(celery_task=getattr(task, "name", None), celery_task_id=task_id, **fields)


def on_task_postrun(**kwargs: Any) -> None:
    context.clear()


def on_setup_logging(**kwargs: Any) -> None:
    """Connected, this stops Celery from replacing the root logger's handlers with its own: Django's LOGGING
    (settings.py), with its JSON formatter and masking filter, stays the one configuration in every process, and
    LOG_LEVEL its level (a worker's ``--loglevel`` no longer changes it; nor, in the tests, does the embedded
    worker's, which would otherwise raise the whole test process's level to ERROR)."""


def connect() -> None:
    from celery import signals

    signals.before_task_publish.connect(on_before_task_publish, weak=False, dispatch_uid="ops.log_context.publish")
    signals.task_prerun.connect(on_task_prerun, weak=False, dispatch_uid="ops.log_context.prerun")
    signals.task_postrun.connect(on_task_postrun, weak=False, dispatch_uid="ops.log_context.postrun")
    signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid="ops.log_context.logging")
