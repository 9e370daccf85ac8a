"""Reading the ledger: balances now or as of any moment, and the trial balance.

Balances are sums over entries, never a running total that postings update: a balance row that every posting must
lock would serialise all postings to a hot account (PSP clearing, platform fees). What is summed is kept short by the
closed days (models.py, "Closed days"): a balance is the closed part, read from the rollup tables, plus the entries
after it, one index range scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from ledger.models import DEBIT_NORMAL, AccountType

# What stands for everything before ``cut``, from where the entries are summed:
# - nothing closed yet: nothing (cut = -infinity: every entry);
# - a moment after the last closed day, or now: the accounts' closed totals (cut: the end of the last closed day);
# - a moment inside the closed days: the months before its own month, then the days of its month before its own day
#   (cut: the start of its day). Or, when the moment is nearer the last closed day than the first (``backward``; the
#   recent month ends, mostly): the totals less the months after its month and the days of its month from its own
#   day on. Either way a few months of rows and at most a month of days.
# The branches not taken are constants false, which PostgreSQL drops when it plans. ``current`` says whether the
# boundary these were worked out from is still the one this statement sees (see _movements).
# ``{accounts_*}``: the condition that limits the sums to some accounts, or TRUE: two statements rather than one
# with "%(accounts)s IS NULL OR ...", which PostgreSQL plans without the (account, ...) indexes.
_MOVEMENTS = """
WITH movements AS (
    SELECT t.account_id, t.debits, t.credits
    FROM ledger_accountclosedtotal t
    WHERE %(totals)s AND {accounts_t}
    UNION ALL
    SELECT m.account_id, m.debits, m.credits
    FROM ledger_accountmonth m
    WHERE %(forward)s AND m.month < %(cut_month)s::date AND {accounts_m}
    UNION ALL
    SELECT d.account_id, d.debits, d.credits
    FROM ledger_accountday d
    WHERE %(forward)s AND d.day >= %(cut_month)s::date AND d.day < %(cut_day)s::date AND {accounts_d}
    UNION ALL
    SELECT m.account_id, -m.debits, -m.credits
    FROM ledger_accountmonth m
    WHERE %(backward)s AND m.month > %(cut_month)s::date AND {accounts_m}
    UNION ALL
    SELECT d.account_id, -d.debits, -d.credits
    FROM ledger_accountday d
    WHERE %(backward)s AND d.day >= %(cut_day)s::date AND d.day < %(next_month)s::date AND {accounts_d}
    UNION ALL
    SELECT e.account_id, CASE e.side WHEN 'D' THEN e.amount ELSE 0 END, CASE e.side WHEN 'C' THEN e.amount ELSE 0 END
    FROM ledger_entry e
    WHERE e.effective_at >= coalesce(%(cut)s::timestamptz, '-infinity')
      AND e.effective_at <= coalesce(%(as_of)s::timestamptz, 'infinity')
      AND {accounts_e}
), per_account AS (
    SELECT account_id, sum(debits)::bigint AS debits, sum(credits)::bigint AS credits FROM movements GROUP BY account_id
)
"""

_CURRENT = "(SELECT closed_through FROM ledger_ledgerclosing) IS NOT DISTINCT FROM %(closed_through)s::date"

_BOUNDARY = """
SELECT (SELECT closed_through FROM ledger_ledgerclosing), (SELECT min(day) FROM ledger_accountday)
"""

# The planner's estimates of the rollup and entry ranges cross JIT's threshold easily: compiling took 400 ms of a
# 550 ms trial balance on a million payments, for a query that then reads a few thousand rows.
_NO_JIT = "SET LOCAL jit = off"

_BALANCES = (
    _MOVEMENTS.format(
        accounts_t="t.account_id = ANY(%(accounts)s::bigint[])",
        accounts_d="d.account_id = ANY(%(accounts)s::bigint[])",
        accounts_m="m.account_id = ANY(%(accounts)s::bigint[])",
        accounts_e="e.account_id = ANY(%(accounts)s::bigint[])",
    )
    + f"""
SELECT a.code, a.type, coalesce(m.debits, 0), coalesce(m.credits, 0), {_CURRENT}
FROM ledger_account a LEFT JOIN per_account m ON m.account_id = a.id
WHERE a.id = ANY(%(accounts)s::bigint[])
"""  # noqa: S608 - only the constant fragments above are formatted in
)

# One line per ledger account of the chart: a family of per-seller accounts (``seller_pending:<seller>:EUR``) is one
# control line with the number of accounts it sums, as a general ledger shows a sub-ledger; an account alone in its
# family is shown by its code. Tens of thousands of seller lines would be a page nobody reads, and slow to render.
_TRIAL_BALANCE = (
    _MOVEMENTS.format(accounts_t="TRUE", accounts_d="TRUE", accounts_m="TRUE", accounts_e="TRUE")
    + f"""
SELECT CASE WHEN count(*) = 1 THEN min(a.code) ELSE split_part(a.code, ':', 1) || ':*:' || a.currency END,
       a.type, a.currency, count(*), coalesce(sum(m.debits), 0), coalesce(sum(m.credits), 0), {_CURRENT}
FROM ledger_account a LEFT JOIN per_account m ON m.account_id = a.id
WHERE %(currency)s::varchar IS NULL OR a.currency = %(currency)s::varchar
GROUP BY split_part(a.code, ':', 1), a.type, a.currency
ORDER BY a.currency, 1
"""  # noqa: S608 - same
)


def _plan(closed: date | None, first_day: date | None, as_of: datetime | None) -> dict[str, Any]:
    """The constants of _MOVEMENTS for a closed boundary and a moment."""
    plan: dict[str, Any] = {"closed_through": closed, "as_of": as_of, "cut_day": None, "cut_month": None}
    plan["next_month"] = None
    if closed is None:
        return plan | {"totals": False, "forward": False, "backward": False, "cut": None}
    closed_end = datetime.combine(closed + timedelta(days=1), time(), UTC)
    if as_of is None or as_of >= closed_end:
        return plan | {"totals": True, "forward": False, "backward": False, "cut": closed_end}
    cut_day = as_of.astimezone(UTC).date()
    backward = first_day is not None and (cut_day - first_day) > (closed - cut_day)
    cut = datetime.combine(cut_day, time(), UTC)
    cut_month = cut_day.replace(day=1)
    next_month = (cut_month + timedelta(days=31)).replace(day=1)
    return plan | {
        "totals": backward,
        "forward": not backward,
        "backward": backward,
        "cut": cut,
        "cut_day": cut_day,
        "cut_month": cut_month,
        "next_month": next_month,
    }


def _movements(cursor: CursorWrapper, sql: str, params: dict[str, Any], as_of: datetime | None) -> list[Any]:
    """Rows of ``sql`` (which ends each row with ``current``), worked out from the closed boundary as it is now.

    The boundary is read first, so that the sums run with constants PostgreSQL can plan with (with the boundary read
    in the same statement, it estimated the range of a hot account's entries as most of them and read all 1.4
    million). A close that commits between the two reads would make a day count twice or not at all: the second
    statement checks, on its own snapshot, that the boundary is still the one read, and the sums are done again if
    not (a close commits once a day; within REPEATABLE READ the two reads always agree)."""
    for _ in range(5):
        cursor.execute(_BOUNDARY)
        closed, first_day = cursor.fetchone()
        cursor.execute(sql, params | _plan(closed, first_day, as_of))
        rows = cursor.fetchall()
        if all(row[-1] for row in rows):
            return [row[:-1] for row in rows]
    raise RuntimeError("the ledger's closed days kept moving while their balances were read")


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
            rows = _movements(cursor, _BALANCES, {"accounts": ids}, as_of)
            found = {code: signed_balance(type_, debits, credits) for code, type_, debits, credits in rows}
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
        rows = _movements(cursor, _TRIAL_BALANCE, {"currency": currency}, as_of)
    by_currency: dict[str, list[TrialBalanceLine]] = {}
    for code, type_, cur, accounts, debits, credits in rows:
        line = TrialBalanceLine(code, AccountType(type_), cur, accounts, int(debits), int(credits))
        by_currency.setdefault(cur, []).append(line)
    return [TrialBalance(currency=cur, lines=lines) for cur, lines in by_currency.items()]
