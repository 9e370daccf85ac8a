"""Reading the ledger: balances now or as of any moment, and the trial balance.

Balances are sums over entries, never a stored running total: a balance row that every posting must lock would
serialise all postings to a hot account (PSP clearing, platform fees). The (account, effective_at) index keeps a
sum one index range scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from ledger.models import DEBIT_NORMAL, AccountType

_BALANCES = """
SELECT a.code, a.type,
       coalesce(sum(CASE e.side WHEN 'D' THEN e.amount END), 0) AS debits,
       coalesce(sum(CASE e.side WHEN 'C' THEN e.amount END), 0) AS credits
FROM ledger_account a
LEFT JOIN ledger_entry e ON e.account_id = a.id AND (%(as_of)s::timestamptz IS NULL OR e.effective_at <= %(as_of)s)
WHERE a.code = ANY(%(codes)s)
GROUP BY a.code, a.type
"""

_TRIAL_BALANCE = """
SELECT a.code, a.type, a.currency,
       coalesce(sum(CASE e.side WHEN 'D' THEN e.amount END), 0) AS debits,
       coalesce(sum(CASE e.side WHEN 'C' THEN e.amount END), 0) AS credits
FROM ledger_account a
LEFT JOIN ledger_entry e ON e.account_id = a.id AND (%(as_of)s::timestamptz IS NULL OR e.effective_at <= %(as_of)s)
WHERE %(currency)s::varchar IS NULL OR a.currency = %(currency)s
GROUP BY a.code, a.type, a.currency
ORDER BY a.currency, a.code
"""


def signed_balance(type_: str, debits: int, credits: int) -> int:
    """The balance on the account's normal side: debits - credits for assets and expenses, the reverse otherwise."""
    return debits - credits if type_ in DEBIT_NORMAL else credits - debits


def account_balances(*, codes: list[str], as_of: datetime | None = None) -> dict[str, int]:
    """Balances of these accounts (0 for one never posted to or not yet created), as of ``as_of`` or now."""
    with connection.cursor() as cursor:
        cursor.execute(_BALANCES, {"codes": codes, "as_of": as_of})
        found = {code: signed_balance(type_, debits, credits) for code, type_, debits, credits in cursor.fetchall()}
    return {code: found.get(code, 0) for code in codes}


def account_balance(*, code: str, as_of: datetime | None = None) -> int:
    return account_balances(codes=[code], as_of=as_of)[code]


@dataclass(frozen=True)
class TrialBalanceLine:
    code: str
    type: AccountType
    currency: str
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        return signed_balance(self.type, self.debits, self.credits)


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
    with connection.cursor() as cursor:
        cursor.execute(_TRIAL_BALANCE, {"currency": currency, "as_of": as_of})
        rows = cursor.fetchall()
    by_currency: dict[str, list[TrialBalanceLine]] = {}
    for code, type_, cur, debits, credits in rows:
        by_currency.setdefault(cur, []).append(TrialBalanceLine(code, AccountType(type_), cur, debits, credits))
    return [TrialBalance(currency=cur, lines=lines) for cur, lines in by_currency.items()]
