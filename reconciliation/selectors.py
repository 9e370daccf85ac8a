"""The ledger's internal checks (DESIGN.md "Reconciliation": the ledger sums to zero per currency, every wallet equals
its ledger accounts, every captured order has exactly one pay-in posting).

Each check is one set-based query that returns only what is wrong, so a clean ledger costs three aggregates however
large it grows, and a broken one returns its first ``limit`` violations with the total count beside them
(``count(*) OVER ()`` is computed before the LIMIT). They read whatever snapshot the caller's transaction holds:
``services.ledger_check_run`` runs them in two REPEATABLE READ transactions on one exported snapshot, so they agree
with each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from ledger.money import minor_unit_exponent
from payments.models import CAPTURED_STATUSES
from wallets.models import Bucket
from wallets.services import PAYIN_KIND

LEDGER_BALANCED = "ledger_balanced"
WALLETS_MATCH_LEDGER = "wallets_match_ledger"
PAYINS_MATCH_ORDERS = "payins_match_orders"
PAYIN_AMOUNTS_MATCH_ORDERS = "payin_amounts_match_orders"

CHECK_TITLES = {
    LEDGER_BALANCED: "the ledger sums to zero per currency",
    WALLETS_MATCH_LEDGER: "every wallet equals its ledger accounts",
    PAYINS_MATCH_ORDERS: "every captured order has exactly one pay-in posting",
    PAYIN_AMOUNTS_MATCH_ORDERS: "every pay-in posting is for its order's amount and currency",
}

# Orders whose charge was captured: a refund leaves the pay-in standing and posts on top of it.
CAPTURED = sorted(status.value for status in CAPTURED_STATUSES)
# How many unbalanced journal transactions a currency's violation names: enough to start an investigation.
JOURNALS_NAMED = 10

Violation = dict[str, Any]


@dataclass(frozen=True)
class CheckResult:
    check: str
    count: int  # every violation the check found
    violations: list[Violation]  # the first ``limit`` of them, each {"check": ..., "detail": {...}}


_UNBALANCED_CURRENCIES = """
SELECT currency, debits, credits, count(*) OVER () AS total
FROM (
    SELECT currency,
           coalesce(sum(amount) FILTER (WHERE side = 'D'), 0) AS debits,
           coalesce(sum(amount) FILTER (WHERE side = 'C'), 0) AS credits
    FROM ledger_entry
    GROUP BY currency
) per_currency
WHERE debits <> credits
ORDER BY currency
LIMIT %(limit)s
"""

# Only run when a currency is off, to say where: a clean ledger never pays for this per-journal grouping.
_UNBALANCED_JOURNALS = """
SELECT currency, journal_id, kind, reference, net
FROM (
    SELECT e.currency, j.id AS journal_id, j.kind, j.reference,
           sum(CASE e.side WHEN 'D' THEN e.amount ELSE -e.amount END) AS net,
           row_number() OVER (PARTITION BY e.currency ORDER BY j.id) AS n
    FROM ledger_entry e
    JOIN ledger_journaltransaction j ON j.id = e.journal_id
    WHERE e.currency = ANY(%(currencies)s)
    GROUP BY e.currency, j.id
    HAVING sum(CASE e.side WHEN 'D' THEN e.amount ELSE -e.amount END) <> 0
) unbalanced
WHERE n <= %(named)s
ORDER BY currency, journal_id
"""

# Wallet accounts are liabilities: a bucket is its account's credits - debits. A wallet with no mapped account or
# no entries sums to nothing, and must then be all zeros.
_WALLETS_OFF_LEDGER = """
WITH ledger AS (
    SELECT wa.wallet_id,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END)
                    FILTER (WHERE wa.bucket = %(pending)s), 0) AS pending,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END)
                    FILTER (WHERE wa.bucket = %(available)s), 0) AS available,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END)
                    FILTER (WHERE wa.bucket = %(reserved)s), 0) AS reserved,
           coalesce(sum(CASE e.side WHEN 'C' THEN e.amount ELSE -e.amount END)
                    FILTER (WHERE wa.bucket = %(held)s), 0) AS held
    FROM wallets_walletaccount wa
    LEFT JOIN ledger_entry e ON e.account_id = wa.account_id
    GROUP BY wa.wallet_id
)
SELECT w.id, w.seller_account, w.currency, w.pending, w.available, w.reserved, w.held,
       coalesce(l.pending, 0), coalesce(l.available, 0), coalesce(l.reserved, 0), coalesce(l.held, 0),
       count(*) OVER () AS total
FROM wallets_wallet w
LEFT JOIN ledger l ON l.wallet_id = w.id
WHERE (w.pending, w.available, w.reserved, w.held)
      IS DISTINCT FROM (coalesce(l.pending, 0), coalesce(l.available, 0), coalesce(l.reserved, 0), coalesce(l.held, 0))
ORDER BY w.id
LIMIT %(limit)s
"""

# The two pay-in checks in one pass over the pay-ins: their entries grouped by journal (an integer, in the entries'
# order), then one FULL JOIN with the orders.
# - Both directions: captured orders without exactly one pay-in, and pay-ins whose reference is not a captured order
#   (an order never charged, or no order at all). A journal is one pay-in of its reference: PostgreSQL's unique index
#   on (kind, reference) holds, whatever a session's triggers, so "more than one" cannot be; grouping the journals
#   by reference again to count them cost a second aggregate over every pay-in, spilling to disk at a million
#   (tests/test_ledger_check.py holds the constraint in place).
# - Amounts: a pay-in's gross is what it debits (PSP clearing, its one debit line); the order's amount, in minor units
#   of its currency, is its MoneyField scaled by the currency's ISO 4217 exponent (passed in: PostgreSQL does not
#   know it). A pay-in with no entries has no amount to compare. Its currencies' least and greatest, which differ when
#   its lines are in two currencies, are compared bytewise ("C"): the database's collation only ordered them slower.
# Only the violations are kept (``off``), each check's first ``limit`` returned with its total.
_PAYINS_OFF = """
WITH payins AS (
    SELECT j.reference, 1 AS postings, min(e.currency COLLATE "C") AS currency,
           max(e.currency COLLATE "C") AS other_currency,
           sum(e.amount) FILTER (WHERE e.side = 'D') AS gross
    FROM ledger_journaltransaction j
    LEFT JOIN ledger_entry e ON e.journal_id = j.id
    WHERE j.kind = %(kind)s
    GROUP BY j.id
), exponents AS (
    SELECT * FROM unnest(%(currencies)s::varchar[], %(exponents)s::int[]) AS x(currency, exponent)
), off AS MATERIALIZED (
    SELECT coalesce(o.payment_order_id, p.reference) AS reference, o.status, coalesce(p.postings, 0) AS postings,
           o.amount_currency, (o.amount * power(10::numeric, x.exponent))::bigint AS order_minor,
           p.currency AS payin_currency, p.gross,
           coalesce((o.status = ANY(%(captured)s) AND coalesce(p.postings, 0) <> 1)
                    OR (p.reference IS NOT NULL AND (o.id IS NULL OR o.status <> ALL(%(captured)s))), false)
               AS payin_off,
           coalesce(o.id IS NOT NULL AND p.currency IS NOT NULL
                    AND (p.currency <> p.other_currency
                         OR p.currency <> o.amount_currency
                         OR x.exponent IS NULL
                         OR p.gross <> (o.amount * power(10::numeric, x.exponent))::bigint), false) AS amount_off
    FROM payments_paymentorder o
    FULL JOIN payins p ON p.reference = o.payment_order_id
    LEFT JOIN exponents x ON x.currency = o.amount_currency
    WHERE (o.status = ANY(%(captured)s) AND coalesce(p.postings, 0) <> 1)
       OR (p.reference IS NOT NULL AND (o.id IS NULL OR o.status <> ALL(%(captured)s)))
       OR (o.id IS NOT NULL AND p.currency IS NOT NULL
           AND (p.currency <> p.other_currency
                OR p.currency <> o.amount_currency
                OR x.exponent IS NULL
                OR p.gross <> (o.amount * power(10::numeric, x.exponent))::bigint))
)
(SELECT %(payins)s, reference, status, postings, amount_currency, order_minor, payin_currency, gross,
        count(*) OVER () AS total
 FROM off WHERE payin_off ORDER BY reference LIMIT %(limit)s)
UNION ALL
(SELECT %(amounts)s, reference, status, postings, amount_currency, order_minor, payin_currency, gross,
        count(*) OVER () AS total
 FROM off WHERE amount_off ORDER BY reference LIMIT %(limit)s)
"""


def _fetch(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def unbalanced_currencies(*, limit: int) -> CheckResult:
    """Currencies whose entries' debits and credits differ, each naming its first unbalanced journal transactions.

    PostgreSQL refuses to commit an unbalanced journal transaction; this is the defence behind that trigger (a
    disabled trigger, a restore, a hand-written fix).
    """
    rows = _fetch(_UNBALANCED_CURRENCIES, {"limit": limit})
    journals: dict[str, list[dict[str, Any]]] = {}
    if rows:
        found = _fetch(_UNBALANCED_JOURNALS, {"currencies": [row[0] for row in rows], "named": JOURNALS_NAMED})
        for currency, journal_id, kind, reference, net in found:
            journals.setdefault(currency, []).append(
                {"id": journal_id, "kind": kind, "reference": reference, "net": int(net)}
            )
    violations = [
        {
            "check": LEDGER_BALANCED,
            "detail": {
                "currency": currency,
                "debits": int(debits),  # sums of bigint arrive as Decimal; JSON wants int
                "credits": int(credits),
                "unbalanced_journals": journals.get(currency, []),
            },
        }
        for currency, debits, credits, _ in rows
    ]
    return CheckResult(LEDGER_BALANCED, rows[0][-1] if rows else 0, violations)


def wallets_off_ledger(*, limit: int) -> CheckResult:
    """Wallets whose pending, available, reserved or held differ from the balances of the accounts mapped to them."""
    rows = _fetch(
        _WALLETS_OFF_LEDGER,
        {
            "pending": Bucket.PENDING.value,
            "available": Bucket.AVAILABLE.value,
            "reserved": Bucket.RESERVED.value,
            "held": Bucket.HELD.value,
            "limit": limit,
        },
    )
    violations = [
        {
            "check": WALLETS_MATCH_LEDGER,
            "detail": {
                "wallet_id": wallet_id,
                "seller_account": seller,
                "currency": currency,
                "wallet": {"pending": pending, "available": available, "reserved": reserved, "held": held},
                "ledger": {
                    "pending": int(l_pending),
                    "available": int(l_available),
                    "reserved": int(l_reserved),
                    "held": int(l_held),
                },
            },
        }
        for (
            wallet_id,
            seller,
            currency,
            pending,
            available,
            reserved,
            held,
            l_pending,
            l_available,
            l_reserved,
            l_held,
            _,
        ) in rows
    ]
    return CheckResult(WALLETS_MATCH_LEDGER, rows[0][-1] if rows else 0, violations)


def payin_checks(*, limit: int) -> list[CheckResult]:
    """Both pay-in checks, in one pass: captured orders without exactly one pay-in posting and pay-in postings that
    no captured order explains (PAYINS_MATCH_ORDERS); pay-in postings whose gross or currency is not their order's
    amount, a pay-in of the wrong size (PAYIN_AMOUNTS_MATCH_ORDERS)."""
    currencies = sorted(settings.PAYMENT_CURRENCIES)
    rows = _fetch(
        _PAYINS_OFF,
        {
            "kind": PAYIN_KIND,
            "captured": CAPTURED,
            "currencies": currencies,
            "exponents": [minor_unit_exponent(code) for code in currencies],
            "payins": PAYINS_MATCH_ORDERS,
            "amounts": PAYIN_AMOUNTS_MATCH_ORDERS,
            "limit": limit,
        },
    )
    payins = [
        {
            "check": PAYINS_MATCH_ORDERS,
            "detail": {"payment_order_id": reference, "order_status": status, "payin_postings": int(postings)},
        }
        for check, reference, status, postings, *_ in rows
        if check == PAYINS_MATCH_ORDERS
    ]
    amounts = [
        {
            "check": PAYIN_AMOUNTS_MATCH_ORDERS,
            "detail": {
                "payment_order_id": reference,
                "order": {"currency": order_currency, "amount": order_minor},
                "payin": {"currency": payin_currency, "gross": int(gross) if gross is not None else None},
            },
        }
        for check, reference, _, _, order_currency, order_minor, payin_currency, gross, _ in rows
        if check == PAYIN_AMOUNTS_MATCH_ORDERS
    ]
    totals = {check: total for check, *_, total in rows}
    return [
        CheckResult(PAYINS_MATCH_ORDERS, totals.get(PAYINS_MATCH_ORDERS, 0), payins),
        CheckResult(PAYIN_AMOUNTS_MATCH_ORDERS, totals.get(PAYIN_AMOUNTS_MATCH_ORDERS, 0), amounts),
    ]


def payins_off_orders(*, limit: int) -> CheckResult:
    """Captured orders without exactly one pay-in posting, and pay-in postings that no captured order explains."""
    return payin_checks(limit=limit)[0]


def payin_amounts_off_orders(*, limit: int) -> CheckResult:
    """Pay-in postings whose gross or currency is not their order's amount (a pay-in of the wrong size)."""
    return payin_checks(limit=limit)[1]


# In the order they run and report. An entry may answer for the checks after it too (a list of results): the two
# pay-in checks read the same pay-ins, in one pass, and the second is then not run again.
CHECKS: dict[str, Callable[..., CheckResult | list[CheckResult]]] = {
    LEDGER_BALANCED: unbalanced_currencies,
    WALLETS_MATCH_LEDGER: wallets_off_ledger,
    PAYINS_MATCH_ORDERS: payin_checks,
    PAYIN_AMOUNTS_MATCH_ORDERS: payin_amounts_off_orders,
}


def describe_violation(violation: Violation) -> str:
    """One line a person can act on, for the command's report, the log and the admin."""
    check, detail = violation["check"], violation["detail"]
    if check == LEDGER_BALANCED:
        journals = ", ".join(
            f"#{j['id']} {j['kind']}:{j['reference']} (net {j['net']})" for j in detail["unbalanced_journals"]
        )
        return (
            f"{detail['currency']}: debits {detail['debits']} != credits {detail['credits']}"
            f" (debits - credits = {detail['debits'] - detail['credits']})"
            + (f"; unbalanced journal transactions: {journals}" if journals else "")
        )
    if check == WALLETS_MATCH_LEDGER:
        differences = ", ".join(
            f"{bucket} {detail['wallet'][bucket]} != ledger {detail['ledger'][bucket]}"
            for bucket in Bucket.values
            if detail["wallet"][bucket] != detail["ledger"][bucket]
        )
        return f"wallet #{detail['wallet_id']} ({detail['seller_account']} {detail['currency']}): {differences}"
    if check == PAYINS_MATCH_ORDERS:
        order, status, postings = detail["payment_order_id"], detail["order_status"], detail["payin_postings"]
        if status is None:
            return f"pay-in posting {order}: no payment order has this id"
        if status not in CAPTURED:
            return f"pay-in posting for order {order}, which is {status}, not captured"
        return f"order {order} is {status} with {postings} pay-in postings, not 1"
    if check == PAYIN_AMOUNTS_MATCH_ORDERS:
        order, payin = detail["order"], detail["payin"]
        return (
            f"pay-in for order {detail['payment_order_id']} is {payin['gross']} {payin['currency']} (minor units),"
            f" the order {order['amount']} {order['currency']}"
        )
    return f"{check}: {detail}"


CHART_NIGHTS = 30
# Categories drawn in the chart, bottom up; matched is the bulk and is shown as a number, not a bar.
CHART_CATEGORIES = [
    "timing",
    "amount_difference",
    "fee_difference",
    "missing_internally",
    "missing_at_psp",
    "status_mismatch",
    "duplicate_line",
    "unclassifiable",
]


def runs_chart(*, psp: str | None = None) -> list[dict[str, Any]]:
    """The last 30 nights' runs, oldest first, with their findings per category: what the run list draws."""
    from reconciliation.models import ReconciliationRun

    runs = ReconciliationRun.objects.order_by("-settlement_date")
    if psp:
        runs = runs.filter(psp=psp)
    rows = list(runs.values("pk", "psp", "settlement_date", "status", "counts")[:CHART_NIGHTS])
    return [
        {
            "pk": row["pk"],
            "label": f"{row['settlement_date']:%m-%d} {row['psp']}",
            "status": row["status"],
            "matched": row["counts"].get("matched", 0),
            "findings": [(category, row["counts"].get(category, 0)) for category in CHART_CATEGORIES],
            "total": sum(row["counts"].get(category, 0) for category in CHART_CATEGORIES),
        }
        for row in reversed(rows)
    ]
