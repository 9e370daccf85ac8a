"""The Celery application. Tasks live in each app's ``tasks.py``; the beat schedule lives in ``config/schedule.py``."""

from __future__ import annotations

import os

from celery import Celery

from ops import signals as log_context_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("marketpay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The request id and payment ids travel with every task, and Django's LOGGING stays the logging configuration.
log_context_signals.connect()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from config.schedule import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE
