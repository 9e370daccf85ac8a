"""``manage.py ledger_check``: run the ledger's checks now, print what they found, exit 1 on any violation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconciliation.selectors import CHECK_TITLES, describe_violation
from reconciliation.services import ledger_check_run


class Command(BaseCommand):
    help = (
        "Check that the ledger sums to zero per currency, that every wallet equals its ledger accounts and that "
        "every captured order has exactly one pay-in posting. Stores the run and exits non-zero on any violation."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--actor", default="manage.py ledger_check", help="Who ran it, as recorded on the stored run."
        )

    def handle(self, *args: Any, actor: str, **options: Any) -> None:
        run = ledger_check_run(actor=actor)
        seconds = (run.finished_at - run.started_at).total_seconds()
        self.stdout.write(f"Ledger check run #{run.pk} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC ({seconds:.2f} s)")
        for check, title in CHECK_TITLES.items():
            found = run.check_counts.get(check, 0)
            if not found:
                self.stdout.write(f"  {title}: " + self.style.SUCCESS("OK"))
                continue
            self.stdout.write(f"  {title}: " + self.style.ERROR(f"{found} violation(s)"))
            stored = [violation for violation in run.violations if violation["check"] == check]
            for violation in stored:
                self.stdout.write(f"    - {describe_violation(violation)}")
            if found > len(stored):
                self.stdout.write(f"    ... and {found - len(stored)} more, not stored")
        if not run.ok:
            raise CommandError(f"{run.violation_count} violation(s): see ledger check run #{run.pk} in the admin")
        self.stdout.write(self.style.SUCCESS("No violations."))
