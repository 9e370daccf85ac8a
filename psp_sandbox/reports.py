"""Settlement reports: Stripe's itemized payout reconciliation report, as CSV, streamed.

Two report types of Stripe's Reporting API, one row per balance transaction, ordered by ``created`` then ``id``:
- ``payout_reconciliation.itemized.5``: the transactions whose funds became available in the interval (their
  ``available_on``), which is what was settled to the bank then; the daily settlement report
  (``GET /v1/sandbox/settlement_report?date=``) is this report for one UTC day;
- ``balance_change_from_activity.itemized.3``: the transactions created in the interval.

Amounts are decimal major units by the currency's ISO 4217 exponent (never floats), currencies lower-case,
timestamps ``YYYY-MM-DD HH:MM:SS`` in UTC (the sandbox account's time zone, so ``created`` equals ``created_utc``).
Rows are read in chunks by keyset (``created``, ``id``) and written as they are read: memory does not grow with the
size of the day.

Report faults (psp_sandbox/knobs.py), decided per (seed, the row's settlement date, balance transaction id) as
psp_sandbox/faults.py does, so the same data and seed give the same file; each alteration is listed in the run's
``sandbox_alterations``:
- ``missing_row``: the row is left out;
- ``extra_row``: a row the sandbox has no transaction for follows it (a copy with fresh ids and no metadata);
- ``amount_off``: gross and net are off by 1 to 100 minor units, either way;
- ``next_day``: the row settles a day late: its ``available_on`` is the next day (so it moves to the next day's
  payout reconciliation report).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Q

from psp_sandbox import faults, knobs
from psp_sandbox.models import BalanceTransaction, Charge, Dispute, Refund, Transfer, TransferReversal
from psp_sandbox.money import major

PAYOUT_RECONCILIATION = "payout_reconciliation.itemized.5"
BALANCE_CHANGE = "balance_change_from_activity.itemized.3"
REPORT_TYPES = (PAYOUT_RECONCILIATION, BALANCE_CHANGE)

# Stripe's itemized payout reconciliation columns, in Stripe's order (the default set plus the metadata we use).
COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "automatic_payout_id",
    "automatic_payout_effective_at",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "payment_method_type",
    "card_brand",
    "card_country",
    "connected_account_id",
    "payment_metadata[payment_order_id]",
    "payment_metadata[payment_id]",
    "payment_metadata[checkout_id]",
    "refund_metadata[refund_id]",
    "transfer_metadata[payout_id]",
)
CHUNK_ROWS = 1000
FAULT_KINDS = ("missing_row", "extra_row", "amount_off", "next_day")


@dataclass(frozen=True)
class ReportSpec:
    """Everything a report's bytes depend on; stored with its File so each download is the same."""

    report_type: str
    start: datetime
    end: datetime
    created_before: datetime
    columns: tuple[str, ...]
    currency: str | None
    fault_seed: str
    rates: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        return {
            "report_type": self.report_type,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "created_before": self.created_before.isoformat(),
            "columns": list(self.columns),
            "currency": self.currency,
            "fault_seed": self.fault_seed,
            "rates": self.rates,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReportSpec:
        return cls(
            report_type=data["report_type"],
            start=datetime.fromisoformat(data["start"]),
            end=datetime.fromisoformat(data["end"]),
            created_before=datetime.fromisoformat(data["created_before"]),
            columns=tuple(data["columns"]),
            currency=data["currency"],
            fault_seed=data["fault_seed"],
            rates=dict(data["rates"]),
        )


def spec_for(
    *,
    report_type: str,
    start: datetime,
    end: datetime,
    now: datetime,
    config: knobs.Config,
    columns: Iterable[str] = COLUMNS,
    currency: str | None = None,
) -> ReportSpec:
    return ReportSpec(
        report_type=report_type,
        start=start,
        end=end,
        created_before=now,
        columns=tuple(columns),
        currency=currency,
        fault_seed=config.fault_seed,
        rates={
            "missing_row": config.report_missing_row_rate,
            "extra_row": config.report_extra_row_rate,
            "amount_off": config.report_amount_off_rate,
            "next_day": config.report_next_day_rate,
        },
    )


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


# --- Which faults strike which row ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    missing: bool = False
    extra: bool = False
    delta: int = 0  # minor units added to gross and net
    late: bool = False


def decide(spec: ReportSpec, txn_id: str, settles: date) -> Decision:
    identity = f"{settles.isoformat()}:{txn_id}"

    def fires(kind: str) -> bool:
        return faults.fires(spec.rates.get(kind, 0.0), seed=spec.fault_seed, kind=f"report_{kind}", identity=identity)

    delta = 0
    if fires("amount_off"):
        draw = faults.draw(spec.fault_seed, "report_amount_off_size", identity)
        size = 1 + int(draw * 200) % 100
        delta = size if int(draw * 200) < 100 else -size
    return Decision(missing=fires("missing_row"), extra=fires("extra_row"), delta=delta, late=fires("next_day"))


def alterations(spec: ReportSpec) -> list[dict[str, Any]]:
    """What the faults change in the report, from ids and dates only (cheap: no joins, nothing rendered)."""
    found: list[dict[str, Any]] = []
    if not any(spec.rates.values()):
        return found
    for txn_id, available_on, _ in _keyset(_window(spec).values_list("id", "available_on", "created")):
        decision = decide(spec, txn_id, available_on.date())
        in_report = _in_interval(spec, available_on, decision)
        if decision.late and (in_report or spec.start <= available_on < spec.end):
            # Listed by the report it left and by the one it moved to; before the missing fault, which strikes the
            # row where it moved: a row both late and missing has still left its own day's report, and a reader of
            # that report must be told (it was listed nowhere for that day).
            effective = (available_on + timedelta(days=1)).date().isoformat()
            found.append({"kind": "next_day", "balance_transaction_id": txn_id, "available_on": effective})
        if decision.missing:
            if in_report:
                found.append({"kind": "missing_row", "balance_transaction_id": txn_id})
            continue
        if not in_report:
            continue
        if decision.delta:
            found.append({"kind": "amount_off", "balance_transaction_id": txn_id, "delta_minor_units": decision.delta})
        if decision.extra:
            found.append({"kind": "extra_row", "balance_transaction_id": _extra_id("txn", txn_id), "after": txn_id})
    return found


# --- Rows -----------------------------------------------------------------------------------------------------------


def csv_chunks(spec: ReportSpec) -> Iterator[bytes]:
    """The report as CSV, a chunk of rows at a time: header first, then rows in (created, id) order."""
    buffer = _Lines()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(spec.columns)
    yield buffer.take()
    for row in rows(spec):
        writer.writerow([row.get(column, "") for column in spec.columns])
        if buffer.size >= 64 * 1024:
            yield buffer.take()
    yield buffer.take()


def rows(spec: ReportSpec) -> Iterator[dict[str, str]]:
    window = _window(spec).only(
        "id",
        "type",
        "reporting_category",
        "amount",
        "fee",
        "net",
        "currency",
        "available_on",
        "source",
        "description",
        "created",
    )
    chunk: list[BalanceTransaction] = []
    for txn in _keyset(window, objects=True):
        chunk.append(txn)
        if len(chunk) == CHUNK_ROWS:
            yield from _render_chunk(spec, chunk)
            chunk = []
    yield from _render_chunk(spec, chunk)


def _window(spec: ReportSpec) -> Any:
    txns = BalanceTransaction.objects.filter(created__lt=spec.created_before)
    if spec.currency:
        txns = txns.filter(currency=spec.currency)
    if spec.report_type == BALANCE_CHANGE:
        return txns.filter(created__gte=spec.start, created__lt=spec.end)
    # A day before the interval too: a row of that day may settle a day late, into the interval (next_day fault).
    start = spec.start - timedelta(days=1) if spec.rates.get("next_day") else spec.start
    return txns.filter(available_on__gte=start, available_on__lt=spec.end)


def _keyset(queryset: Any, *, objects: bool = False) -> Iterator[Any]:
    """Every row of ``queryset`` in (created, id) order, CHUNK_ROWS per query: no cursor held across the stream."""
    last: tuple[datetime, str] | None = None
    while True:
        page = queryset.order_by("created", "id")
        if last is not None:
            page = page.filter(Q(created__gt=last[0]) | Q(created=last[0], id__gt=last[1]))
        batch = list(page[:CHUNK_ROWS])
        if not batch:
            return
        yield from batch
        tail = batch[-1]
        last = (tail.created, tail.id) if objects else (tail[2], tail[0])
        if len(batch) < CHUNK_ROWS:
            return


def _in_interval(spec: ReportSpec, available_on: datetime, decision: Decision) -> bool:
    if spec.report_type == BALANCE_CHANGE:
        return True
    effective = available_on + timedelta(days=1) if decision.late else available_on
    return spec.start <= effective < spec.end


def _render_chunk(spec: ReportSpec, chunk: list[BalanceTransaction]) -> Iterator[dict[str, str]]:
    if not chunk:
        return
    related = _Related(chunk)
    for txn in chunk:
        decision = decide(spec, txn.id, txn.available_on.date())
        if not _in_interval(spec, txn.available_on, decision) or decision.missing:
            continue
        row = _row(txn, related, decision)
        yield row
        if decision.extra:
            yield _extra_row(row, txn.id)


def _row(txn: BalanceTransaction, related: _Related, decision: Decision) -> dict[str, str]:
    available_on = txn.available_on + timedelta(days=1) if decision.late else txn.available_on
    currency = txn.currency
    row = {
        "balance_transaction_id": txn.id,
        "created_utc": _stamp(txn.created),
        "created": _stamp(txn.created),
        "available_on_utc": _stamp(available_on),
        "available_on": _stamp(available_on),
        "currency": currency,
        "gross": major(txn.amount + decision.delta, currency),
        "fee": major(txn.fee, currency),
        "net": major(txn.net + decision.delta, currency),
        "reporting_category": txn.reporting_category,
        "source_id": txn.source,
        "description": txn.description,
        # The automatic payout that took the day's funds to the bank: one per currency and day.
        "automatic_payout_id": _extra_id("po", f"{currency}:{available_on.date().isoformat()}"),
        "automatic_payout_effective_at": _stamp(available_on),
    }
    charge = related.charge_of(txn.source)
    if charge is not None:
        intent_metadata = charge.payment_intent.metadata
        row.update(
            {
                "customer_facing_amount": major(txn.amount + decision.delta, currency),
                "customer_facing_currency": currency,
                "charge_id": charge.id,
                "payment_intent_id": charge.payment_intent_id,
                "charge_created_utc": _stamp(charge.created),
                "payment_method_type": "card",
                "card_brand": charge.card_brand,
                "card_country": charge.card_country,
                "payment_metadata[payment_order_id]": intent_metadata.get("payment_order_id", ""),
                "payment_metadata[payment_id]": intent_metadata.get("payment_id", ""),
                "payment_metadata[checkout_id]": intent_metadata.get("checkout_id", ""),
            }
        )
    refund = related.refunds.get(txn.source)
    if refund is not None:
        row["refund_metadata[refund_id]"] = refund.metadata.get("refund_id", "")
    transfer = related.transfer_of(txn.source)
    if transfer is not None:
        row["connected_account_id"] = transfer.destination
        row["transfer_metadata[payout_id]"] = transfer.metadata.get("payout_id", "")
    return row


def _extra_row(row: dict[str, str], after: str) -> dict[str, str]:
    """A settled row the sandbox has no transaction for: the row before it with fresh ids and no metadata."""
    extra = {key: value for key, value in row.items() if "metadata[" not in key}
    extra["balance_transaction_id"] = _extra_id("txn", after)
    extra["source_id"] = _extra_id(row["source_id"].split("_", 1)[0], after)
    if row.get("charge_id"):
        extra["charge_id"] = extra["source_id"] if row["source_id"].startswith("ch_") else _extra_id("ch", after)
        extra["payment_intent_id"] = _extra_id("pi", after)
    return extra


def _extra_id(prefix: str, seed: str) -> str:
    return f"{prefix}_{hashlib.sha256(f'{prefix}:{seed}'.encode()).hexdigest()[:24]}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class _Related:
    """The objects behind one chunk's balance transactions, fetched in a handful of queries."""

    def __init__(self, chunk: list[BalanceTransaction]) -> None:
        sources: dict[str, list[str]] = {}
        for txn in chunk:
            sources.setdefault(txn.source.split("_", 1)[0], []).append(txn.source)
        self.charges = Charge.objects.select_related("payment_intent").in_bulk(sources.get("ch", []))
        self.refunds = Refund.objects.select_related("charge__payment_intent").in_bulk(sources.get("re", []))
        self.disputes = Dispute.objects.select_related("charge__payment_intent").in_bulk(sources.get("dp", []))
        self.transfers = Transfer.objects.in_bulk(sources.get("tr", []))
        self.reversals = TransferReversal.objects.select_related("transfer").in_bulk(sources.get("trr", []))

    def charge_of(self, source: str) -> Charge | None:
        if source in self.charges:
            return self.charges[source]
        if source in self.refunds:
            return self.refunds[source].charge
        if source in self.disputes:
            return self.disputes[source].charge
        return None

    def transfer_of(self, source: str) -> Transfer | None:
        if source in self.transfers:
            return self.transfers[source]
        if source in self.reversals:
            return self.reversals[source].transfer
        return None


class _Lines:
    """A file-like sink for csv.writer that hands its text over in chunks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def take(self) -> bytes:
        data = "".join(self.parts).encode()
        self.parts, self.size = [], 0
        return data
