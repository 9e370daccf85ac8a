"""``manage.py reconcile --psp stripe --date YYYY-MM-DD [--file F]``: reconcile one settlement date now."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconciliation.ingest import SettlementFileInvalid
from reconciliation.runs import reconciliation_run


class Command(BaseCommand):
    help = (
        "Reconcile the PSP's settlement file for one date against our books: fetched from the PSP, or read from "
        "--file. Prints the counts per category; exits 1 when findings are left open for a person."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--psp", default="stripe")
        parser.add_argument("--date", required=True, type=date.fromisoformat, help="the settlement date, YYYY-MM-DD")
        parser.add_argument("--file", type=Path, help="a settlement report CSV instead of fetching it")

    def handle(self, *args: Any, psp: str, date: date, file: Path | None, **options: Any) -> None:
        def progress(phase: str, lines: int) -> None:
            if sys.stderr.isatty() or phase != "ingest":
                self.stderr.write(f"\r{phase}: {lines:,} lines read" if phase == "ingest" else f"\n{phase}…", ending="")
                self.stderr.flush()

        try:
            stream = file.open("rb") if file is not None else None
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        try:
            run = reconciliation_run(
                settlement_date=date,
                psp=psp,
                stream=stream,
                file_name=file.name if file else "",
                actor="manage.py reconcile",
                progress=progress,
            )
        except SettlementFileInvalid as exc:
            raise CommandError(f"the file is not a settlement report: {exc}") from exc
        self.stderr.write("")
        self.stdout.write(
            f"Reconciliation {run.psp} {run.settlement_date} (attempt {run.attempts}): {run.status}, "
            f"{run.lines_total:,} lines, {run.lines_malformed:,} malformed"
        )
        for category, count in sorted(run.counts.items()):
            amounts = ", ".join(f"{amount} {currency}" for currency, amount in sorted(run.amounts[category].items()))
            self.stdout.write(f"  {category}: {count:,} ({amounts}, minor units)")
        for item in run.malformed[:20]:
            self.stdout.write(f"  malformed line {item['line']}: {item['error']}")
        for currency, check in sorted(run.psp_clearing.items()):
            self.stdout.write(
                f"  PSP clearing {currency}: ledger {check['ledger']}, outstanding {check['outstanding']}, "
                f"difference {check['difference']}"
            )
        if run.ledger_check is not None and not run.ledger_check.ok:
            self.stdout.write(f"  ledger check #{run.ledger_check.pk}: {run.ledger_check.violation_count} violation(s)")
        open_findings = run.mismatches.filter(status="open").count()
        self.stdout.write(f"  open findings: {open_findings}")
        if open_findings:
            sys.exit(1)
