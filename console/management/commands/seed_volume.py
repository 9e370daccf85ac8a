"""``manage.py seed_volume``: a production-sized data set for measuring the finance console (console/volume.py)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.volume import Step, volume_seed
from reconciliation.selectors import describe_violation
from reconciliation.services import ledger_check_run

NOT_PRODUCTION_FLAG = "--i-know-this-is-not-production"


class Command(BaseCommand):
    help = (
        "Load N payments (two orders each) with everything that follows from them: transitions, refunds, disputes, "
        "ledger postings, wallets, payouts, webhooks, dead letters, reconciliation runs and findings. Set-based SQL, "
        "in one transaction, run with session_replication_role = replica: PostgreSQL's guards on orders, the ledger "
        "and wallets (and its foreign key checks) are off for that transaction, because they refuse rows born in "
        "their final state. The ledger checks run afterwards and must pass. Needs a PostgreSQL superuser, and DEBUG "
        f"on or {NOT_PRODUCTION_FLAG}: never run it against production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--payments", type=int, default=1_000_000, help="payments to add (default 1,000,000)")
        parser.add_argument("--sellers", type=int, default=10_000, help="sellers, a multiple of 10 (default 10,000)")
        parser.add_argument("--days", type=int, default=365, help="the payments span this many days up to now")
        parser.add_argument("--seed", type=int, default=1, help="the same seed loads the same data")
        parser.add_argument(
            NOT_PRODUCTION_FLAG,
            action="store_true",
            dest="not_production",
            help="run with DEBUG off (a benchmark's own database)",
        )

    def handle(
        self, *args: Any, payments: int, sellers: int, days: int, seed: int, not_production: bool, **options: Any
    ) -> None:
        # The load switches PostgreSQL's guards off for its transaction: refused anywhere that might be production.
        if not settings.DEBUG and not not_production:
            raise CommandError(f"seed_volume runs with DEBUG on, or with {NOT_PRODUCTION_FLAG}")
        if payments < 1 or days < 1:
            raise CommandError("--payments and --days must be positive")
        started = time.monotonic()

        def report(step: Step) -> None:
            rows = f"{step.rows:>12,} rows" if step.rows else " " * 17
            self.stdout.write(f"  {step.name:<38}{rows} {step.seconds:>8.1f} s")

        self.stdout.write(f"Loading {payments:,} payments, {sellers:,} sellers, over {days} days:")
        try:
            steps = volume_seed(payments=payments, sellers=sellers, days=days, seed=seed, report=report)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        loaded = time.monotonic() - started
        self.stdout.write(f"Loaded {sum(step.rows for step in steps):,} rows in {loaded:.1f} s. Checking the ledger...")
        run = ledger_check_run(actor="manage.py seed_volume")
        seconds = (run.finished_at - run.started_at).total_seconds()
        if not run.ok:
            for violation in run.violations[:20]:
                self.stdout.write(f"  - {describe_violation(violation)}")
            raise CommandError(f"ledger check run #{run.pk}: {run.violation_count} violation(s) in the loaded data")
        self.stdout.write(self.style.SUCCESS(f"Ledger check run #{run.pk}: no violations ({seconds:.1f} s)."))
        # The load wrote its entries with the triggers off, the closed days' one included: the days are rolled up
        # again from the entries, as the nightly close would have done them.
        call_command("ledger_close", "--reopen", stdout=self.stdout)
