"""The one writer of the ledger (DESIGN.md "Ledger"). Everything that moves money posts through ``journal_post``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper

from ledger.errors import AccountMismatch, InvalidPosting, PostingConflict, UnbalancedPosting
from ledger.models import Account, AccountType, Entry, JournalTransaction, LedgerClosing, Side


@dataclass(frozen=True)
class AccountRef:
    """An account by its code, with the type and currency it must have; created on first use."""

    code: str
    type: AccountType
    currency: str


@dataclass(frozen=True)
class Line:
    account: AccountRef
    side: Side
    amount: int  # minor units of the account's currency, > 0


@dataclass(frozen=True)
class Posting:
    journal_id: int
    kind: str
    reference: str
    created: bool  # False: (kind, reference) was posted before and this call wrote nothing


# Account ids this process has seen committed. Accounts are never deleted (entries protect them) and their type and
# currency never change, so a remembered id stays right; remembering saves a lookup on every posting.
_known_accounts: dict[str, tuple[int, str, str]] = {}

# The header and its entries in one statement: one round trip, and no moment at which a journal exists without its
# entries (which the "has entries" check would refuse under SET CONSTRAINTS ALL IMMEDIATE). Entries go in by account
# id: a posting that moves guarded balance rows (wallets) locks them in one global order, so two postings over the
# same two wallets cannot deadlock.
_INSERT_POSTING = """
WITH journal AS (
    INSERT INTO ledger_journaltransaction (kind, reference, effective_at, memo, actor)
    VALUES (%(kind)s, %(reference)s, coalesce(%(effective_at)s, statement_timestamp()), %(memo)s, %(actor)s)
    ON CONFLICT (kind, reference) DO NOTHING
    RETURNING id, effective_at
), entries AS (
    INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)
    SELECT journal.id, line.account_id, line.side, line.amount, line.currency, journal.effective_at
    FROM journal, unnest(%(accounts)s::bigint[], %(sides)s::varchar[], %(amounts)s::bigint[], %(currencies)s::varchar[])
        AS line(account_id, side, amount, currency)
    ORDER BY line.account_id
    RETURNING 1
)
SELECT id FROM journal
"""


def journal_post(
    *,
    kind: str,
    reference: str,
    lines: Sequence[Line],
    actor: str,
    memo: str = "",
    effective_at: datetime | None = None,
) -> Posting:
    """Post one business event: its lines must balance in each currency on its own.

    Idempotent per (kind, reference): posting the same event again returns the first posting and writes nothing,
    also when two callers race (the unique index makes the second wait for the first, then find its row). Joins the
    caller's transaction, so a pay-in posts in the same transaction as its order's SUCCESS. PostgreSQL checks the
    balance again at COMMIT, whatever code wrote the entries.
    """
    lines_check(lines)
    with transaction.atomic(savepoint=False):
        account_ids = accounts_ensure(accounts=[line.account for line in lines])
        with connection.cursor() as cursor:
            cursor.execute(
                _INSERT_POSTING,
                {
                    "kind": kind,
                    "reference": reference,
                    "effective_at": effective_at,
                    "memo": memo,
                    "actor": actor,
                    "accounts": [account_ids[line.account.code] for line in lines],
                    "sides": [line.side.value for line in lines],
                    "amounts": [line.amount for line in lines],
                    "currencies": [line.account.currency for line in lines],
                },
            )
            inserted = cursor.fetchone()
    if inserted is not None:
        return Posting(journal_id=inserted[0], kind=kind, reference=reference, created=True)
    # Checked outside the atomic block, so that refusing leaves the caller's transaction usable.
    existing = JournalTransaction.objects.get(kind=kind, reference=reference)
    _same_posting(existing, lines, account_ids)
    return Posting(journal_id=existing.pk, kind=kind, reference=reference, created=False)


# Many postings of one kind in one statement: the same shape as _INSERT_POSTING, each line naming its journal by
# reference. The entries of the whole batch go in by account id, the one global order every posting locks wallets in.
_INSERT_POSTINGS = """
WITH journal AS (
    INSERT INTO ledger_journaltransaction (kind, reference, effective_at, memo, actor)
    SELECT %(kind)s, wanted.reference, statement_timestamp(), %(memo)s, %(actor)s
    FROM unnest(%(references)s::varchar[]) WITH ORDINALITY AS wanted(reference, n)
    ORDER BY wanted.n
    ON CONFLICT (kind, reference) DO NOTHING
    RETURNING id, reference, effective_at
), entries AS (
    INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)
    SELECT journal.id, line.account_id, line.side, line.amount, line.currency, journal.effective_at
    FROM journal
    JOIN unnest(%(line_references)s::varchar[], %(accounts)s::bigint[], %(sides)s::varchar[], %(amounts)s::bigint[],
                %(currencies)s::varchar[]) AS line(reference, account_id, side, amount, currency)
        ON line.reference = journal.reference
    ORDER BY line.account_id
    RETURNING 1
)
SELECT reference, id FROM journal
"""


def journal_post_many(*, kind: str, postings: Sequence[tuple[str, Sequence[Line]]], actor: str) -> list[Posting]:
    """``journal_post`` for many events of one kind, ``postings`` being (reference, lines): each balanced on its own,
    idempotent per reference as there, in one statement for all the new ones (a reconciliation run's captures).

    An event posted before goes through ``journal_post`` instead, which returns its first posting or refuses other
    entries under the same name. That refusal comes after the new postings are written: a caller that wants all or
    nothing runs this inside its own transaction (the reconciliation's captures do).
    """
    if not postings:
        return []
    for _, lines in postings:
        lines_check(lines)
    if len({reference for reference, _ in postings}) != len(postings):
        raise InvalidPosting(f"a batch of {kind} postings names one reference twice")
    with transaction.atomic(savepoint=False):
        account_ids = accounts_ensure(accounts=[line.account for _, lines in postings for line in lines])
        flat = [(reference, line) for reference, lines in postings for line in lines]
        with connection.cursor() as cursor:
            cursor.execute(
                _INSERT_POSTINGS,
                {
                    "kind": kind,
                    "memo": "",
                    "actor": actor,
                    "references": [reference for reference, _ in postings],
                    "line_references": [reference for reference, _ in flat],
                    "accounts": [account_ids[line.account.code] for _, line in flat],
                    "sides": [line.side.value for _, line in flat],
                    "amounts": [line.amount for _, line in flat],
                    "currencies": [line.account.currency for _, line in flat],
                },
            )
            inserted = dict(cursor.fetchall())
    return [
        Posting(journal_id=inserted[reference], kind=kind, reference=reference, created=True)
        if reference in inserted
        else journal_post(kind=kind, reference=reference, lines=lines, actor=actor)
        for reference, lines in postings
    ]


def _same_posting(existing: JournalTransaction, lines: Sequence[Line], account_ids: dict[str, int]) -> None:
    """A repeat of an event must be that event: the same entries. Anything else is a second event under a used name,
    which silently returning the first posting would lose."""
    wanted = sorted((account_ids[line.account.code], line.side.value, line.amount) for line in lines)
    stored = sorted(Entry.objects.filter(journal=existing).values_list("account_id", "side", "amount"))
    if wanted != stored:
        raise PostingConflict(
            f"{existing.kind}:{existing.reference} was posted before with other entries; "
            "a new event needs a new reference"
        )


def journal_reverse(*, kind: str, reference: str, actor: str, memo: str = "") -> Posting:
    """Post the mirror image of the posting (kind, reference): every debit a credit and back. Idempotent too."""
    original = JournalTransaction.objects.filter(kind=kind, reference=reference).first()
    if original is None:
        raise InvalidPosting(f"there is no posting {kind}:{reference} to reverse")
    entries = Entry.objects.filter(journal=original).select_related("account")
    lines = [
        Line(
            account=AccountRef(entry.account.code, AccountType(entry.account.type), entry.currency),
            side=Side.CREDIT if entry.side == Side.DEBIT else Side.DEBIT,
            amount=entry.amount,
        )
        for entry in entries
    ]
    return journal_post(
        kind="reversal", reference=f"{kind}:{reference}", lines=lines, actor=actor, memo=memo or f"reverses {original}"
    )


def accounts_ensure(*, accounts: Sequence[AccountRef]) -> dict[str, int]:
    """Ids of these accounts, creating the missing ones. Refuses a code that exists with another type or currency."""
    wanted = {account.code: account for account in accounts}
    ids: dict[str, int] = {}
    unknown = []
    for code, account in wanted.items():
        known = _known_accounts.get(code)
        if known is None:
            unknown.append(account)
            continue
        _same_account(account, known[1], known[2])
        ids[code] = known[0]
    if not unknown:
        return ids
    unknown.sort(key=lambda account: account.code)  # one insert order: concurrent first uses cannot deadlock
    Account.objects.bulk_create(
        [Account(code=a.code, type=a.type, currency=a.currency) for a in unknown], ignore_conflicts=True
    )
    found = {}
    for pk, code, type_, currency in Account.objects.filter(code__in=[a.code for a in unknown]).values_list(
        "pk", "code", "type", "currency"
    ):
        _same_account(wanted[code], type_, currency)
        ids[code] = pk
        found[code] = (pk, type_, currency)
    # Only once committed: a rolled-back transaction takes its new accounts with it.
    transaction.on_commit(lambda: _known_accounts.update(found))
    return ids


def _same_account(account: AccountRef, type_: str, currency: str) -> None:
    if (account.type, account.currency) != (type_, currency):
        raise AccountMismatch(
            f"account {account.code} is {type_} in {currency}, not {account.type} in {account.currency}"
        )


def lines_check(lines: Sequence[Line]) -> None:
    """Refuse lines that cannot be a posting: fewer than two, a non-positive amount, or unbalanced in a currency."""
    if len(lines) < 2:
        raise InvalidPosting("a posting needs at least two lines")
    net: dict[str, int] = defaultdict(int)
    for line in lines:
        if type(line.amount) is not int or line.amount <= 0:
            raise InvalidPosting(f"line amounts are positive integers of minor units, not {line.amount!r}")
        if line.side not in (Side.DEBIT, Side.CREDIT):
            raise InvalidPosting(f"a line is a debit or a credit, not {line.side!r}")
        net[line.account.currency] += line.amount if line.side == Side.DEBIT else -line.amount
    unbalanced = {currency: amount for currency, amount in net.items() if amount}
    if unbalanced:
        detail = ", ".join(f"{currency} debits - credits = {amount}" for currency, amount in sorted(unbalanced.items()))
        raise UnbalancedPosting(f"each currency must balance on its own: {detail}")


# --- Closed days (models.py, "Closed days") ---------------------------------------------------------------------------

# Waiting longer for the entries' lock would hold every posting queued behind the close: it gives up, and the next
# run tries again. The balances stay exact meanwhile, only longer to sum.
_CLOSE_LOCK_TIMEOUT = "2s"

# One day's movements of every account that moved, into its day row, its month's and its account's total.
_CLOSE_DAY = """
WITH moved AS (
    INSERT INTO ledger_accountday (account_id, day, debits, credits)
    SELECT account_id, %(day)s::date,
           coalesce(sum(amount) FILTER (WHERE side = 'D'), 0), coalesce(sum(amount) FILTER (WHERE side = 'C'), 0)
    FROM ledger_entry
    WHERE effective_at >= %(day)s::date::timestamp AT TIME ZONE 'UTC'
      AND effective_at < (%(day)s::date + 1)::timestamp AT TIME ZONE 'UTC'
    GROUP BY account_id
    RETURNING account_id, debits, credits
), months AS (
    INSERT INTO ledger_accountmonth (account_id, month, debits, credits)
    SELECT account_id, date_trunc('month', %(day)s::date)::date, debits, credits FROM moved ORDER BY account_id
    ON CONFLICT (account_id, month) DO UPDATE
        SET debits = ledger_accountmonth.debits + excluded.debits,
            credits = ledger_accountmonth.credits + excluded.credits
)
INSERT INTO ledger_accountclosedtotal (account_id, debits, credits)
SELECT account_id, debits, credits FROM moved ORDER BY account_id
ON CONFLICT (account_id) DO UPDATE
    SET debits = ledger_accountclosedtotal.debits + excluded.debits,
        credits = ledger_accountclosedtotal.credits + excluded.credits
"""


def ledger_days_close(*, through: date | None = None) -> date | None:
    """Roll the entries up, day by day, through ``through`` (default: yesterday, UTC), and return the last closed
    day. Only days that are over: a day closed early would send each of its later postings through the back-dated
    path (the trigger), which updates rows every posting shares. Each day is its own short transaction, under a
    SHARE lock on the entries: postings in flight finish first, and new ones wait the few milliseconds it takes, so
    no entry of the day is missed or counted twice. Safe to run twice or at once: each day moves the boundary from
    the value it read, or does nothing."""
    last = through or (datetime.now(UTC).date() - timedelta(days=1))
    while True:
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{_CLOSE_LOCK_TIMEOUT}'")
            cursor.execute("LOCK TABLE ledger_entry IN SHARE MODE")
            closed = _closing_locked(cursor)
            if closed is None:
                cursor.execute("SELECT (min(effective_at) AT TIME ZONE 'UTC')::date FROM ledger_entry")
                first = cursor.fetchone()[0]
                if first is None or first > last:
                    return None
                day = first
            else:
                day = closed + timedelta(days=1)
            if day > last:
                return closed
            cursor.execute(_CLOSE_DAY, {"day": day})
            LedgerClosing.objects.filter(pk=1).update(closed_through=day)


def ledger_days_reopen() -> None:
    """Forget every closed day: balances read all entries again until the next ``ledger_days_close``. For a bulk
    load that wrote entries with the database's triggers off (``seed_volume``), which the rollup would not see."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE ledger_entry IN SHARE MODE")
        _closing_locked(cursor)
        cursor.execute("DELETE FROM ledger_accountday")
        cursor.execute("DELETE FROM ledger_accountmonth")
        cursor.execute("DELETE FROM ledger_accountclosedtotal")
        LedgerClosing.objects.filter(pk=1).update(closed_through=None)


def _closing_locked(cursor: CursorWrapper) -> date | None:
    """The closed boundary, its row locked: two closes at once move it one after the other. The row is created by
    migration 0007, and again here if it is gone (a test database is flushed between some tests)."""
    cursor.execute("INSERT INTO ledger_ledgerclosing (id, closed_through) VALUES (1, NULL) ON CONFLICT DO NOTHING")
    return LedgerClosing.objects.select_for_update().get(pk=1).closed_through
