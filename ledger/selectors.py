"""Reading the ledger: balances now or as of any moment, and the trial balance.

Balances are sums over entries, never a running total that postings update: a balance row that every posting must
lock would serialise all postings to a hot account (PSP clearing, platform fees). What is summed is kept short by the
closed days (models.py, "Closed days"): a balance is the closed part, read from the rollup tables, plus the entries
after it, one index range scan. The closed part and the entries are read in one statement, on one snapshot: a close
committing meanwhile cannot make a day count twice or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from ledger.models import DEBIT_NORMAL, AccountType

# Where the sum over entries starts (``cut``), and what stands for everything before it:
# - nothing closed yet: every entry (cut = -infinity);
# - a moment after the last closed day, or now: the accounts' closed totals, then the entries since the close;
# - a moment inside the closed days: the days before its own day, then its day's entries up to the moment.
# ``accounts`` limits it to some account ids (NULL: every account).
_MOVEMENTS = """
WITH closing AS (
    -- A scalar subquery: no row (a test database flushed since its migration) reads as nothing closed.
    SELECT closed_through, (closed_through + 1)::timestamp AT TIME ZONE 'UTC' AS closed_end
    FROM (SELECT (SELECT closed_through FROM ledger_ledgerclosing) AS closed_through) AS c
), bounds AS (
    SELECT closed_through, closed_end,
           CASE WHEN closed_end IS NULL THEN '-infinity'::timestamptz
                WHEN %(as_of)s::timestamptz IS NULL OR %(as_of)s::timestamptz >= closed_end THEN closed_end
                ELSE date_trunc('day', %(as_of)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           END AS cut
    FROM closing
), movements AS (
    SELECT t.account_id, t.debits, t.credits
    FROM bounds b, ledger_accountclosedtotal t
    WHERE b.cut = b.closed_end AND (%(accounts)s::bigint[] IS NULL OR t.account_id = ANY(%(accounts)s::bigint[]))
    UNION ALL
    SELECT d.account_id, d.debits, d.credits
    FROM bounds b, ledger_accountday d
    WHERE b.cut < b.closed_end AND d.day < (b.cut AT TIME ZONE 'UTC')::date
      AND (%(accounts)s::bigint[] IS NULL OR d.account_id = ANY(%(accounts)s::bigint[]))
    UNION ALL
    SELECT e.account_id, CASE e.side WHEN 'D' THEN e.amount ELSE 0 END, CASE e.side WHEN 'C' THEN e.amount ELSE 0 END
    FROM bounds b, ledger_entry e
    WHERE e.effective_at >= b.cut AND (%(as_of)s::timestamptz IS NULL OR e.effective_at <= %(as_of)s::timestamptz)
      AND (%(accounts)s::bigint[] IS NULL OR e.account_id = ANY(%(accounts)s::bigint[]))
), per_account AS (
    SELECT account_id, sum(debits)::bigint AS debits, sum(credits)::bigint AS credits FROM movements GROUP BY account_id
)
"""

# The planner cannot know at planning time where the sum starts (it is read in the same statement), so it plans for a
# third of the entries, and that estimate crosses JIT's threshold: compiling took 400 ms of a 550 ms trial balance
# on a million payments, for a query that then reads a few thousand rows.
_NO_JIT = "SET LOCAL jit = off"

_BALANCES = (
    _MOVEMENTS
    + """
SELECT a.code, a.type, coalesce(m.debits, 0), coalesce(m.credits, 0)
FROM ledger_account a LEFT JOIN per_account m ON m.account_id = a.id
WHERE a.id = ANY(%(accounts)s::bigint[])
"""
)

# One line per ledger account of the chart: a family of per-seller accounts (``seller_pending:<seller>:EUR``) is one
# control line with the number of accounts it sums, as a general ledger shows a sub-ledger; an account alone in its
# family is shown by its code. Tens of thousands of seller lines would be a page nobody reads, and slow to render.
_TRIAL_BALANCE = (
    _MOVEMENTS
    + """
SELECT CASE WHEN count(*) = 1 THEN min(a.code) ELSE split_part(a.code, ':', 1) || ':*:' || a.currency END,
       a.type, a.currency, count(*), coalesce(sum(m.debits), 0), coalesce(sum(m.credits), 0)
FROM ledger_account a LEFT JOIN per_account m ON m.account_id = a.id
WHERE %(currency)s::varchar IS NULL OR a.currency = %(currency)s::varchar
GROUP BY split_part(a.code, ':', 1), a.type, a.currency
ORDER BY a.currency, 1
"""
)


def signed_balance(type_: str, debits: int, credits: int) -> int:
    """The balance on the account's normal side: debits - credits for assets and expenses, the reverse otherwise."""
    return debits - credits if type_ in DEBIT_NORMAL else credits - debits


def account_balances(*, codes: list[str], as_of: datetime | None = None) -> dict[str, int]:
    """Balances of these accounts (0 for one never posted to or not yet created), as of ``as_of`` or now."""
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_NO_JIT)
        cursor.execute("SELECT array_agg(id) FROM ledger_account WHERE code = ANY(%s)", [codes])
        ids = cursor.fetchone()[0] or []
        found = {}
        if ids:
            cursor.execute(_BALANCES, {"accounts": ids, "as_of": as_of})
            found = {code: signed_balance(type_, debits, credits) for code, type_, debits, credits in cursor.fetchall()}
    return {code: found.get(code, 0) for code in codes}


def account_balance(*, code: str, as_of: datetime | None = None) -> int:
    return account_balances(codes=[code], as_of=as_of)[code]


@dataclass(frozen=True)
class TrialBalanceLine:
    code: str  # the account's, or its family's (``seller_pending:*:EUR``) when ``accounts`` > 1
    type: AccountType
    currency: str
    accounts: int
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        return signed_balance(self.type, self.debits, self.credits)

    @property
    def family(self) -> str:
        """What the family's codes start with: ``seller_pending:``."""
        return self.code.split(":", 1)[0] + ":"


@dataclass(frozen=True)
class TrialBalance:
    currency: str
    lines: list[TrialBalanceLine]

    @property
    def debits(self) -> int:
        return sum(line.debits for line in self.lines)

    @property
    def credits(self) -> int:
        return sum(line.credits for line in self.lines)

    @property
    def balanced(self) -> bool:
        return self.debits == self.credits


def trial_balances(*, currency: str | None = None, as_of: datetime | None = None) -> list[TrialBalance]:
    """One trial balance per currency: every account's debits and credits, which must total the same."""
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(_NO_JIT)
        cursor.execute(_TRIAL_BALANCE, {"currency": currency, "as_of": as_of, "accounts": None})
        rows = cursor.fetchall()
    by_currency: dict[str, list[TrialBalanceLine]] = {}
    for code, type_, cur, accounts, debits, credits in rows:
        line = TrialBalanceLine(code, AccountType(type_), cur, accounts, int(debits), int(credits))
        by_currency.setdefault(cur, []).append(line)
    return [TrialBalance(currency=cur, lines=lines) for cur, lines in by_currency.items()]
