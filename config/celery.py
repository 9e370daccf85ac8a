"""The Celery application. Tasks live in each app's ``tasks.py``; the beat schedule lives in ``config/schedule.py``."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from ops import signals as log_context_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("marketpay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The request id and payment ids travel with every task, and Django's LOGGING stays the logging configuration.
log_context_signals.connect()


@signals.task_prerun.connect(weak=False, dispatch_uid="config.celery.connections_prerun")
@signals.task_postrun.connect(weak=False, dispatch_uid="config.celery.connections_postrun")
def _database_connections_refresh(task: Any = None, **kwargs: Any) -> None:
    """A task's database connections live as a web request's do: kept between tasks (CELERY_DB_REUSE_MAX stops the
    fixup closing them every time), closed when broken or older than CONN_MAX_AGE, health-checked before reuse. Not
    for a task run eagerly: it runs inside its caller's transaction, as Celery's own fixup knows."""
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from config.schedule import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE
