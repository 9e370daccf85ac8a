"""``manage.py ledger_close``: roll the ledger's finished days up now, as the nightly job does (ledger/models.py,
"Closed days"). Once after deploying the closed days on an existing ledger; ``--reopen`` first after a bulk load that
wrote entries with the triggers off."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from ledger.services import ledger_days_close, ledger_days_reopen


class Command(BaseCommand):
    help = "Close the ledger's days through yesterday (UTC), or through --through."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--through", type=date.fromisoformat, default=None, help="the last day to close")
        parser.add_argument("--reopen", action="store_true", help="forget every closed day first, then close again")

    def handle(self, *args: Any, through: date | None, reopen: bool, **options: Any) -> None:
        started = time.monotonic()
        if reopen:
            ledger_days_reopen()
        closed = ledger_days_close(through=through)
        # Many days closed at once leave each total's row updated as many times (a year: a table 300 times its
        # size, read whole by the trial balance). Rewritten compact (VACUUM FULL: an exclusive lock for the few
        # milliseconds a row per account takes) and analysed now, not whenever autovacuum comes by.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM FULL ANALYZE ledger_accountclosedtotal, ledger_accountmonth")
            cursor.execute("VACUUM ANALYZE ledger_accountday")
        self.stdout.write(f"Ledger days closed through {closed} ({time.monotonic() - started:.1f} s).")
