"""``manage.py recovery_sweep [--every SECONDS]``: one recovery sweep now, or one every SECONDS until stopped (beat
runs it every minute; this is for an operator, and for the chaos run, which sweeps far more often)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from payments.recovery import recovery_sweep

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the recovery sweep once, or every --every seconds."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--every", type=float, default=0.0, help="seconds between sweeps; 0: sweep once")

    def handle(self, *args: Any, every: float, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        while True:
            try:
                report = recovery_sweep()
            except Exception:
                # The loop outlives a failed round (the database or the broker away for a moment).
                logger.exception("recovery sweep failed")
                report = None
            if report is not None and (report.requeued or report.settled or report.letters_closed):
                self.stdout.write(
                    f"requeued {len(report.requeued)}, settled {len(report.settled)}, "
                    f"letters closed {report.letters_closed}, overdue {report.overdue}"
                )
            if every <= 0 or stop.wait(every):
                return
