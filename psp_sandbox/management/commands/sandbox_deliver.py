"""``DJANGO_SETTINGS_MODULE=psp_sandbox.settings manage.py sandbox_deliver [--loop]``: run the sandbox's background
loop (webhook deliveries due now, and the clock) once, or in the foreground until interrupted. The sandbox's gunicorn
workers run the same loop by themselves; this is for tests and for a sandbox started with SANDBOX_BACKGROUND=false."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from psp_sandbox import loop


class Command(BaseCommand):
    help = "Deliver due webhooks and run the sandbox's clock: once, or in a loop."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--loop", action="store_true", help="keep running until interrupted")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["loop"]:
            loop.run_forever()
            return
        attempted = loop.run_once()
        self.stdout.write(f"{attempted} deliveries attempted")
