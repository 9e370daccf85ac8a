"""A reconciliation run (DESIGN.md "Reconciliation"): the PSP's settlement file for one date against our books.

One transaction per attempt, so a run that fails leaves nothing half-written (its FAILED status and error are
recorded after the rollback). Inside it: stage the file (COPY), type and check its lines, match them against our
unsettled items in one FULL OUTER JOIN (reconciliation/matching.py), settle the few lines only the PSP has through
the services that own those objects (a lost webhook: the order moves to its state and the ledger posts), record the
findings, mark what is settled, and post the settlement: per currency, the bank receives the file's net, the PSP's
fees are booked, PSP clearing is relieved of what our books accounted for, small amount differences go to the
reconciliation differences account and everything unexplained to suspense, for a person.

Running a date again is idempotent: the same file (same checksum) changes nothing; another file only adds what was
not settled before, and a finding a person closed stays closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from psycopg import sql

from ledger.models import AccountType, Side
from ledger.money import minor_unit_exponent, to_minor
from ledger.selectors import account_balances
from ledger.services import AccountRef, Line, journal_post
from payments.disputes import dispute_apply
from payments.execution import orders_apply_captures
from payments.models import (
    FINAL_STATUSES,
    Dispute,
    DisputeStatus,
    OrderStatus,
    PaymentOrder,
    Payout,
    PayoutStatus,
    Refund,
    RefundStatus,
)
from payments.payouts import payout_apply_result
from payments.psp.gateway import DisputeNotice, RefundResult, TransferResult, TransferStatus
from payments.psp.gateway import DisputeStatus as PspDisputeStatus
from payments.psp.gateway import RefundStatus as PspRefundStatus
from payments.refunds import refund_apply_result
from reconciliation import ingest, matching
from reconciliation.models import ReconciliationRun, RunStatus
from reconciliation.services import ledger_check_run
from wallets.services import psp_clearing_account, psp_fees_account, suspense_account

logger = logging.getLogger("reconciliation.runs")

ACTOR = "reconciliation"
SETTLEMENT_KIND = "settlement"
# What a line settles in our books: matched, or matched with a difference, or applied from the PSP's side.
ACCOUNTED = ["matched", "amount_difference", "fee_difference", "missing_internally"]


class RunInProgress(Exception):
    """Another attempt of the same run is going on."""


def bank_account(currency: str) -> AccountRef:
    return AccountRef(f"bank:{currency}", AccountType.ASSET, currency)


def differences_account(currency: str) -> AccountRef:
    """Small differences the run adjusted by itself (below RECONCILIATION_AUTO_ADJUST_LIMIT): rounding, FX."""
    return AccountRef(f"reconciliation_differences:{currency}", AccountType.EXPENSE, currency)


@dataclass(frozen=True)
class _Tables:
    stage: str
    lines: str
    results: str
    details: str

    @classmethod
    def for_run(cls, run: ReconciliationRun) -> _Tables:
        base = f"recon_{run.pk}_{run.attempts}"
        return cls(f"{base}_stage", f"{base}_lines", f"{base}_results", f"{base}_details")

    def format(self, statement: str, **more: sql.Composable) -> sql.Composed:
        return sql.SQL(statement).format(
            stage=sql.Identifier(self.stage),
            lines=sql.Identifier(self.lines),
            results=sql.Identifier(self.results),
            details=sql.Identifier(self.details),
            **more,
        )


def reconciliation_run(
    *,
    settlement_date: date,
    psp: str = "stripe",
    stream: IO[bytes] | None = None,
    file_name: str = "",
    actor: str = ACTOR,
    progress: Callable[[str, int], None] | None = None,
) -> ReconciliationRun:
    """Reconcile one date: ``stream`` is an uploaded file; without it the file is fetched from the PSP."""
    run, _ = ReconciliationRun.objects.get_or_create(psp=psp, settlement_date=settlement_date)
    if stream is None:
        from reconciliation.fetch import settlement_report_open

        try:
            stream, file_name = settlement_report_open(settlement_date=settlement_date)
        except Exception as exc:
            _record_failure(run, exc)  # not left RUNNING: the console shows why, and beat's retry tries again
            raise
        source = "psp"
    else:
        source = "upload"
    try:
        with transaction.atomic(durable=True):
            locked = ReconciliationRun.objects.select_for_update(nowait=True).get(pk=run.pk)
            previous = (locked.status, locked.file_checksum)
            locked.attempts += 1
            locked.started_at, locked.status, locked.actor = timezone.now(), RunStatus.RUNNING, actor
            locked.source, locked.file_name, locked.error = source, file_name[:255], ""
            run = locked
            unchanged = _attempt(run, stream, previous, progress or (lambda phase, n: None))
            if unchanged:
                transaction.set_rollback(True)
    except Exception as exc:
        _record_failure(run, exc)
        raise
    finally:
        stream.close()
    if unchanged:
        logger.info("reconciliation %s %s: the same file again, nothing to do", psp, settlement_date)
        return ReconciliationRun.objects.get(pk=run.pk)
    check = ledger_check_run(actor=f"{ACTOR}:{psp}:{settlement_date}")
    ReconciliationRun.objects.filter(pk=run.pk).update(ledger_check=check)
    run.refresh_from_db()
    _log_outcome(run)
    return run


def _attempt(
    run: ReconciliationRun,
    stream: IO[bytes],
    previous: tuple[str, str],
    progress: Callable[[str, int], None],
) -> bool:
    tables = _Tables.for_run(run)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(phase: str) -> None:
        """The seconds since the previous phase ended are this phase's."""
        nonlocal clock
        now = time.monotonic()
        timings[phase], clock = now - clock, now

    currencies = sorted(set(settings.PAYMENT_CURRENCIES) | set(settings.PAYOUT_CURRENCIES))
    common: dict[str, Any] = {
        "psp": run.psp,
        "run": run.pk,
        "date": run.settlement_date.isoformat(),
        "currencies": currencies,
        "exponents": [minor_unit_exponent(code) for code in currencies],
        "thresholds": [_auto_adjust_limit(code) for code in currencies],
        "captured": matching.CAPTURED,
        "accounted": ACCOUNTED,
        **matching.fee_parameters(settings.PSP_FEE_PERCENT, settings.PSP_FEE_FIXED),
        **_window(run.settlement_date),
    }
    with connection.cursor() as cursor:
        # For this transaction only (see the setting). No JIT: compiling the run's few big statements took longer
        # than it saved on them (over a second each, at a million lines), their work being scans, hashes and copies.
        # Parallel workers for the statements that read a whole file: the planner prices each row a worker hands
        # back (parallel_tuple_cost) as if it cost ten times the row's own work, and so never typed the lines on
        # more than one core, though each row's regular expressions and decimal parsing cost far more than its
        # passing (typing a million lines: 3.4 s alone, 2.4 s with a worker on two cores; the join: 4.2 s, 3.7 s).
        cursor.execute(
            "SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true),"
            " set_config('parallel_tuple_cost', '0.001', true)",
            [settings.RECONCILIATION_WORK_MEM],
        )
        staged = ingest.file_stage(cursor, table=tables.stage, stream=stream, progress=lambda n: progress("ingest", n))
        if previous == (RunStatus.SUCCEEDED, staged.checksum):
            return True
        run.file_checksum = staged.checksum
        lap("ingest")
        cursor.execute(tables.format(matching.LINES, split=ingest.split_query(tables.stage, staged)), common)
        staged.lines += cursor.rowcount
        cursor.execute(tables.format(matching.MALFORMED))
        for line_no, error in cursor.fetchall():
            staged.reject(line_no, error)
        staged.malformed_lines.sort(key=lambda item: int(str(item["line"])))
        cursor.execute(tables.format(matching.SETTLED_BEFORE), common)
        cursor.execute(tables.format(matching.DUPLICATE_COPIES))
        copies = cursor.fetchall()
        if copies:
            lines, numbers = (list(column) for column in zip(*copies, strict=True))
            cursor.execute(tables.format(matching.DUPLICATES_MARK), {"lines": lines, "copies": numbers})
        # The join below is planned from these statistics: without them, a table just written looks tiny.
        cursor.execute(tables.format("ANALYZE {lines}"))
        lap("type")
        cursor.execute("SELECT set_config('enable_hashagg', 'off', true)")  # charges grouped in key order (RESULTS)
        cursor.execute(tables.format(matching.RESULTS), common)
        cursor.execute("SET LOCAL enable_hashagg TO DEFAULT")  # what the server says, not "on" regardless
        cursor.execute(tables.format("ALTER TABLE {results} ADD COLUMN auto_note text, ADD COLUMN settled_before bool"))
        cursor.execute(tables.format(matching.DETAILS, split=ingest.split_query(tables.stage, staged)))
        lap("match")
        progress("match", 0)
        psp_only = _columns(cursor, tables.format(matching.PSP_ONLY))
        settled = [(row["txn"], *result) for row, result in zip(psp_only, settle_psp_only_lines(psp_only), strict=True)]
        if settled:
            # One statement for all of them: the results table has no index, so one UPDATE per line scanned it whole.
            txns, categories, notes, accounted = (list(column) for column in zip(*settled, strict=True))
            cursor.execute(
                tables.format(matching.PSP_ONLY_SETTLED),
                {"txns": txns, "categories": categories, "notes": notes, "accounted": accounted, "psp": run.psp},
            )
        lap("psp_only")
        # The open findings about an item alone, read before this run adds its own: an item this run finds alone
        # has no line in it, so only an earlier run's can be resolved by a line arriving now.
        cursor.execute(matching.OPEN_ITEMS, common)
        open_items = [key for (key,) in cursor.fetchall()]
        cursor.execute(tables.format(matching.MISMATCHES), common)
        if open_items:
            cursor.execute(tables.format(matching.CARRIED_RESOLVED), {**common, "open_items": open_items})
        cursor.execute(tables.format(matching.SETTLE_ITEMS), common)
        cursor.execute(tables.format(matching.TOTALS))
        totals = cursor.fetchall()
        cursor.execute(tables.format(matching.SETTLEMENT), common)
        settlement = cursor.fetchall()
        lap("persist")
        for name in (tables.details, tables.results, tables.lines, tables.stage):
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    for currency, net, fees, ours, auto_difference in settlement:
        _post_settlement(run, currency, int(net), int(fees), int(ours), int(auto_difference))
    lap("post")
    run.counts, run.amounts = _summaries(totals)
    run.lines_total, run.lines_malformed, run.malformed = staged.lines, staged.malformed, staged.malformed_lines
    run.psp_clearing = psp_clearing_check(psp=run.psp, currencies=currencies)
    run.timings = {phase: round(seconds, 3) for phase, seconds in timings.items()}
    run.status, run.finished_at = RunStatus.SUCCEEDED, timezone.now()
    run.save()
    return False


def _window(settlement_date: date) -> dict[str, datetime]:
    """Our items the file should hold: booked before the end of (date - the PSP's settlement delay). Those booked
    within the timing window before that may still come in a later file: timing, carried; older ones are missing."""
    day_end = datetime.combine(settlement_date, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    cutoff = day_end - timedelta(days=settings.PSP_SETTLEMENT_DELAY_DAYS)
    return {"cutoff": cutoff, "window_start": cutoff - timedelta(days=settings.RECONCILIATION_TIMING_WINDOW_DAYS)}


def _auto_adjust_limit(currency: str) -> int:
    limit = settings.RECONCILIATION_AUTO_ADJUST_LIMIT.get(currency, settings.RECONCILIATION_AUTO_ADJUST_DEFAULT)
    return to_minor(Decimal(limit), currency)


def _columns(cursor: Any, statement: sql.Composed) -> list[dict[str, Any]]:
    cursor.execute(statement)
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def settle_psp_only(row: dict[str, Any]) -> tuple[str, str | None, bool]:
    """A line only the PSP has: (category, what was done automatically or None, whether our books now hold it).

    Where it names an object of ours the PSP's record moves it, through the same service a webhook would have used.
    """
    return settle_psp_only_lines([row])[0]


def settle_psp_only_lines(rows: list[dict[str, Any]]) -> list[tuple[str, str | None, bool]]:
    """``settle_psp_only`` for each of ``rows``, in their order, as if one after the other. The charges (the lost
    webhooks: a thousand on a bad night) are looked up in two queries and captured in one batch through the payments
    service (payments.execution.orders_apply_captures), the rest one at a time."""
    charges = _charges_settle([row for row in rows if row["key"] is not None and row["category"] == "charge"])
    return [charges[row["txn"]] if row["txn"] in charges else _settle_one(row) for row in rows]


def _charges_settle(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str | None, bool]]:
    """PSP-only charge lines by balance transaction: each names its orders by payment_order_id (else payment_id).
    A line naming a FAILED order is a status mismatch; one whose orders are all final (an earlier line of the batch
    captured them included) names nothing left to do; the others capture their orders."""
    order_ids = sorted({row["payment_order_id"] for row in rows if row["payment_order_id"]})
    payment_ids = sorted({row["payment_id"] for row in rows if not row["payment_order_id"] and row["payment_id"]})
    by_order: dict[str, tuple[str, str]] = {}
    by_payment: dict[str, list[tuple[str, str]]] = {}
    found_orders = PaymentOrder.objects.filter(payment_order_id__in=order_ids).values_list("payment_order_id", "status")
    for order_id, status in found_orders:
        by_order[order_id] = (order_id, status)
    payment_orders = (
        PaymentOrder.objects.filter(event__payment_id__in=payment_ids)
        .order_by("pk")
        .values_list("event__payment_id", "payment_order_id", "status")
    )
    for payment_id, order_id, status in payment_orders:
        by_payment.setdefault(payment_id, []).append((order_id, status))
    status_now: dict[str, str] = {}
    captures: dict[str, str] = {}  # order → the charge's reference: the first line that captures it
    outcome: dict[str, tuple[str, str | None, bool]] = {}
    for row in rows:
        if row["payment_order_id"]:
            found = [by_order[row["payment_order_id"]]] if row["payment_order_id"] in by_order else []
        else:
            found = by_payment.get(row["payment_id"] or "-", [])
        statuses = [status_now.get(order_id, status) for order_id, status in found]
        if not found:
            outcome[row["txn"]] = ("unclassifiable", None, False)
        elif any(status == OrderStatus.FAILED for status in statuses):
            outcome[row["txn"]] = ("status_mismatch", None, False)
        elif all(status in FINAL_STATUSES for status in statuses):
            outcome[row["txn"]] = ("unclassifiable", None, False)
        else:
            for order_id, _ in found:
                captures.setdefault(order_id, row["key"])
                status_now[order_id] = OrderStatus.SUCCESS
            note = f"captured {', '.join(order_id for order_id, _ in found)} from the PSP's settlement"
            outcome[row["txn"]] = ("missing_internally", note, True)
    if captures:
        orders_apply_captures(
            psp_references=captures, actor=ACTOR, reason="settled by the PSP; its webhook never applied"
        )
    return outcome


def _settle_one(row: dict[str, Any]) -> tuple[str, str | None, bool]:
    category, key = row["category"], row["key"]
    if key is None:
        return "unclassifiable", None, False
    if category == "refund_failure":
        refund = Refund.objects.filter(refund_id=key).first()
        if refund is None or refund.status == RefundStatus.FAILED:
            return "unclassifiable", None, False
        refund_apply_result(
            refund_id=key,
            result=RefundResult(PspRefundStatus.FAILED, psp_reference=row["source_id"], failure_code="refund_failed"),
            actor=ACTOR,
        )
        return "missing_internally", f"refund {key} failed at the PSP: booked back", True
    if category == "refund":
        return ("status_mismatch" if Refund.objects.filter(refund_id=key).exists() else "unclassifiable"), None, False
    if category == "transfer":
        payout = Payout.objects.filter(payout_id=key).first()
        if payout is None:
            return "unclassifiable", None, False
        if payout.status not in (PayoutStatus.EXECUTING, PayoutStatus.UNKNOWN):
            return "status_mismatch", None, False
        payout_apply_result(
            payout_id=key, result=TransferResult(TransferStatus.PAID, psp_reference=row["source_id"]), actor=ACTOR
        )
        return "missing_internally", f"payout {key} paid, as the PSP settled it", True
    if category in ("dispute", "dispute_reversal"):
        dispute = Dispute.objects.filter(psp_dispute_id=key).first()
        if category == "dispute_reversal" and (dispute is None or dispute.status != DisputeStatus.OPEN):
            return "status_mismatch", None, False
        notice = DisputeNotice(
            dispute_id=key,
            payment_intent=row["payment_intent_id"] or (dispute.payment_intent if dispute else ""),
            amount=abs(int(row["gross"])),
            currency=row["currency"],
            fee=abs(int(row["fee"])),
            status=PspDisputeStatus.WON if category == "dispute_reversal" else PspDisputeStatus.OPEN,
        )
        return "missing_internally", dispute_apply(notice=notice, actor=ACTOR), True
    return "unclassifiable", None, False


def _post_settlement(
    run: ReconciliationRun, currency: str, net: int, fees: int, ours: int, auto_difference: int
) -> None:
    """The day's settlement in one currency: the bank receives the file's net; PSP fees are booked; PSP clearing
    is relieved of what our books accounted for; small differences go to reconciliation differences and the rest
    (lines nobody can place yet, differences above the limit) to suspense until a person resolves them."""
    unexplained = net + fees - ours - auto_difference

    def line(account: AccountRef, debit: int) -> Line | None:
        if debit == 0:
            return None
        return Line(account, Side.DEBIT if debit > 0 else Side.CREDIT, abs(debit))

    lines = [
        line(bank_account(currency), net),
        line(psp_fees_account(currency), fees),
        line(psp_clearing_account(currency, run.psp), -ours),
        line(differences_account(currency), -auto_difference),
        line(suspense_account(currency), -unexplained),
    ]
    kept = [item for item in lines if item is not None]
    if len(kept) < 2:
        return
    journal_post(
        kind=SETTLEMENT_KIND,
        reference=f"{run.psp}:{run.settlement_date}:{currency}:{run.attempts}",
        lines=kept,
        actor=ACTOR,
        memo=f"settlement of {run.settlement_date}",
    )


def _summaries(totals: list[tuple[Any, ...]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    counts: dict[str, int] = {}
    amounts: dict[str, dict[str, int]] = {}
    for result, currency, count, psp_amount, our_amount in totals:
        counts[result] = counts.get(result, 0) + int(count)
        amount = int(psp_amount) if psp_amount else int(our_amount)
        amounts.setdefault(result, {})[currency] = amounts.get(result, {}).get(currency, 0) + amount
    return counts, amounts


def psp_clearing_check(*, psp: str, currencies: list[str]) -> dict[str, dict[str, int]]:
    """PSP clearing in the ledger against what the PSP still owes us by our records: the items it has not settled
    yet. Equal, unless something posted to PSP clearing that no item of ours explains."""
    with connection.cursor() as cursor:
        cursor.execute(
            matching.OUTSTANDING,
            {
                "psp": psp,
                "currencies": currencies,
                "exponents": [minor_unit_exponent(code) for code in currencies],
                "captured": matching.CAPTURED,
            },
        )
        outstanding = {currency: int(total) for currency, total in cursor.fetchall()}
    codes = {currency: psp_clearing_account(currency, psp).code for currency in currencies}
    balances = account_balances(codes=list(codes.values()))
    report = {}
    for currency, code in codes.items():
        ledger, owed = int(balances[code]), outstanding.get(currency, 0)
        if ledger or owed:
            report[currency] = {"ledger": ledger, "outstanding": owed, "difference": ledger - owed}
    return report


def _record_failure(run: ReconciliationRun, exc: Exception) -> None:
    ReconciliationRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED,
        finished_at=timezone.now(),
        error=f"{type(exc).__name__}: {exc}"[:4000],
        attempts=F("attempts") + 1,
    )
    logger.error("reconciliation run %s %s failed: %s", run.psp, run.settlement_date, exc)


def _log_outcome(run: ReconciliationRun) -> None:
    open_findings = run.mismatches.filter(status="open").count()
    level = logging.WARNING if open_findings or run.lines_malformed else logging.INFO
    logger.log(
        level,
        "reconciliation %s %s: %d lines, %s; %d malformed; %d open findings",
        run.psp,
        run.settlement_date,
        run.lines_total,
        ", ".join(f"{count} {category}" for category, count in sorted(run.counts.items())),
        run.lines_malformed,
        open_findings,
    )
