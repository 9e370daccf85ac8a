"""``manage.py relay_executions``: the execution relay in the foreground (the Procfile's ``relay`` process)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from payments.relay import relay_run


class Command(BaseCommand):
    help = "Queue the executor for every order to execute that PostgreSQL announces (LISTEN/NOTIFY)."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write("execution relay: listening")
        relay_run(stop=stop)
