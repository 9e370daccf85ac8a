"""The one writer of the ledger (DESIGN.md "Ledger"). Everything that moves money posts through ``journal_post``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from ledger.errors import AccountMismatch, InvalidPosting, PostingConflict, UnbalancedPosting
from ledger.models import Account, AccountType, Entry, JournalTransaction, Side


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
