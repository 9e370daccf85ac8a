from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from ledger.errors import AccountMismatch, InvalidPosting, PostingConflict, UnbalancedPosting
from ledger.models import AccountType, Entry, JournalTransaction, Side
from ledger.selectors import account_balance, trial_balances
from ledger.services import AccountRef, Line, accounts_ensure, journal_post, journal_post_many, journal_reverse

pytestmark = pytest.mark.django_db

CLEARING = AccountRef("psp_clearing:stripe:EUR", AccountType.ASSET, "EUR")
SELLER = AccountRef("seller_pending:seller_7:EUR", AccountType.LIABILITY, "EUR")
FEES = AccountRef("platform_fees:EUR", AccountType.REVENUE, "EUR")
CLEARING_JPY = AccountRef("psp_clearing:stripe:JPY", AccountType.ASSET, "JPY")
SELLER_JPY = AccountRef("seller_pending:seller_7:JPY", AccountType.LIABILITY, "JPY")


def payin(reference: str, gross: int = 1000, fee: int = 50) -> list[Line]:
    return [Line(CLEARING, Side.DEBIT, gross), Line(SELLER, Side.CREDIT, gross - fee), Line(FEES, Side.CREDIT, fee)]


def test_a_balanced_posting_moves_every_balance() -> None:
    posting = journal_post(kind="payin", reference="po_1", lines=payin("po_1"), actor="test")

    assert posting.created
    assert Entry.objects.filter(journal_id=posting.journal_id).count() == 3
    assert account_balance(code=CLEARING.code) == 1000
    assert account_balance(code=SELLER.code) == 950
    assert account_balance(code=FEES.code) == 50
    (eur,) = trial_balances()
    assert (eur.currency, eur.debits, eur.credits, eur.balanced) == ("EUR", 1000, 1000, True)


def test_posting_the_same_event_twice_posts_it_once() -> None:
    first = journal_post(kind="payin", reference="po_2", lines=payin("po_2"), actor="test")
    again = journal_post(kind="payin", reference="po_2", lines=list(reversed(payin("po_2"))), actor="test")

    assert (again.journal_id, again.created) == (first.journal_id, False)
    assert JournalTransaction.objects.count() == 1
    assert account_balance(code=CLEARING.code) == 1000


def test_another_event_under_a_used_reference_is_refused_not_dropped() -> None:
    journal_post(kind="payin", reference="po_2b", lines=payin("po_2b"), actor="test")

    with pytest.raises(PostingConflict):
        journal_post(kind="payin", reference="po_2b", lines=payin("po_2b", gross=999_999), actor="test")

    assert account_balance(code=CLEARING.code) == 1000


def test_a_batch_posts_each_event_balanced_on_its_own_and_a_repeat_once() -> None:
    # given one event posted before
    first = journal_post(kind="payin", reference="po_b0", lines=payin("po_b0"), actor="test")

    # when a batch brings it again with two new ones, one of them in another currency
    jpy = [Line(CLEARING_JPY, Side.DEBIT, 500), Line(SELLER_JPY, Side.CREDIT, 500)]
    postings = journal_post_many(
        kind="payin",
        postings=[("po_b0", payin("po_b0")), ("po_b1", payin("po_b1", gross=2000)), ("po_b2", jpy)],
        actor="test",
    )

    # then the repeat is the first posting, and each new one is a journal of its own
    assert [(p.reference, p.created) for p in postings] == [("po_b0", False), ("po_b1", True), ("po_b2", True)]
    assert postings[0].journal_id == first.journal_id
    assert len({p.journal_id for p in postings}) == 3
    assert account_balance(code=CLEARING.code) == 3000
    assert account_balance(code=CLEARING_JPY.code) == 500
    assert all(balance.balanced for balance in trial_balances())


def test_a_batch_with_one_bad_event_posts_none_of_it() -> None:
    unbalanced = [Line(CLEARING, Side.DEBIT, 100), Line(SELLER, Side.CREDIT, 99)]

    with pytest.raises(UnbalancedPosting):
        journal_post_many(kind="payin", postings=[("po_c1", payin("po_c1")), ("po_c2", unbalanced)], actor="test")
    with pytest.raises(InvalidPosting, match="twice"):
        journal_post_many(kind="payin", postings=[("po_c3", payin("po_c3")), ("po_c3", payin("po_c3"))], actor="test")

    assert JournalTransaction.objects.count() == 0


def test_a_batch_refuses_another_event_under_a_used_reference() -> None:
    journal_post(kind="payin", reference="po_d0", lines=payin("po_d0"), actor="test")

    with pytest.raises(PostingConflict), transaction.atomic():
        journal_post_many(
            kind="payin", postings=[("po_d1", payin("po_d1")), ("po_d0", payin("po_d0", gross=7000))], actor="test"
        )

    assert list(JournalTransaction.objects.values_list("reference", flat=True)) == ["po_d0"]
    assert account_balance(code=CLEARING.code) == 1000


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([Line(CLEARING, Side.DEBIT, 100), Line(SELLER, Side.CREDIT, 99)], UnbalancedPosting),
        # balanced in total, but not in each currency: EUR and JPY never add up
        (
            [Line(CLEARING, Side.DEBIT, 100), Line(SELLER_JPY, Side.CREDIT, 100)],
            UnbalancedPosting,
        ),
        ([Line(CLEARING, Side.DEBIT, 100)], InvalidPosting),
        ([Line(CLEARING, Side.DEBIT, 0), Line(SELLER, Side.CREDIT, 0)], InvalidPosting),
        ([Line(CLEARING, Side.DEBIT, -5), Line(SELLER, Side.CREDIT, -5)], InvalidPosting),
        ([Line(CLEARING, Side.DEBIT, 1.5), Line(SELLER, Side.CREDIT, 1.5)], InvalidPosting),  # type: ignore[arg-type]
    ],
    ids=["unbalanced", "currencies mixed", "one line", "zero", "negative", "float"],
)
def test_a_posting_that_does_not_balance_is_refused_and_writes_nothing(lines: list[Line], error: type) -> None:
    with pytest.raises(error):
        journal_post(kind="bad", reference="x", lines=lines, actor="test")
    assert JournalTransaction.objects.count() == Entry.objects.count() == 0


def test_an_account_keeps_its_type_and_currency() -> None:
    accounts_ensure(accounts=[FEES])
    with pytest.raises(AccountMismatch):
        accounts_ensure(accounts=[AccountRef(FEES.code, AccountType.ASSET, "EUR")])


def test_balance_as_of_a_moment_counts_only_entries_effective_by_then() -> None:
    now = timezone.now()
    journal_post(kind="payin", reference="old", lines=payin("old"), actor="t", effective_at=now - timedelta(days=2))
    journal_post(kind="payin", reference="new", lines=payin("new", 500, 20), actor="t", effective_at=now)

    assert account_balance(code=CLEARING.code, as_of=now - timedelta(days=1)) == 1000
    assert account_balance(code=CLEARING.code, as_of=now) == 1500
    (old,) = trial_balances(as_of=now - timedelta(days=1))
    assert old.debits == old.credits == 1000


def test_a_reversal_is_a_new_posting_that_cancels_the_first() -> None:
    journal_post(kind="payin", reference="po_3", lines=payin("po_3"), actor="test")

    reversal = journal_reverse(kind="payin", reference="po_3", actor="test")
    again = journal_reverse(kind="payin", reference="po_3", actor="test")

    assert reversal.created
    assert not again.created
    assert {account_balance(code=a.code) for a in (CLEARING, SELLER, FEES)} == {0}
    assert Entry.objects.count() == 6


def test_currencies_balance_separately_in_one_posting() -> None:
    lines = [*payin("fx"), Line(CLEARING_JPY, Side.DEBIT, 700), Line(SELLER_JPY, Side.CREDIT, 700)]
    journal_post(kind="payin", reference="two-currencies", lines=lines, actor="test")
    assert {tb.currency: tb.balanced for tb in trial_balances()} == {"EUR": True, "JPY": True}


# --- PostgreSQL's own guards, proven with raw SQL around the ORM ---------------------------------------------------


def _raw_journal(cursor: object, reference: str) -> int:
    cursor.execute(  # type: ignore[attr-defined]
        "INSERT INTO ledger_journaltransaction (kind, reference, effective_at, memo, actor)"
        " VALUES ('raw', %s, now(), '', 'sql') RETURNING id",
        [reference],
    )
    return cursor.fetchone()[0]  # type: ignore[attr-defined,no-any-return]


def _raw_entry(cursor: object, journal_id: int, account_id: int, side: str, amount: int, currency: str) -> None:
    cursor.execute(  # type: ignore[attr-defined]
        "INSERT INTO ledger_entry (journal_id, account_id, side, amount, currency, effective_at)"
        " VALUES (%s, %s, %s, %s, %s, now())",
        [journal_id, account_id, side, amount, currency],
    )


def _commit_point(cursor: object) -> None:
    # The test runs inside a transaction that is rolled back, never committed: make the deferred checks run now.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # type: ignore[attr-defined]


def test_postgresql_refuses_an_unbalanced_journal_at_commit() -> None:
    ids = accounts_ensure(accounts=[CLEARING, SELLER])
    with pytest.raises(IntegrityError, match="does not balance in EUR"), transaction.atomic():
        with connection.cursor() as cursor:
            journal = _raw_journal(cursor, "unbalanced")
            _raw_entry(cursor, journal, ids[CLEARING.code], "D", 100, "EUR")
            _raw_entry(cursor, journal, ids[SELLER.code], "C", 90, "EUR")
            _commit_point(cursor)


def test_postgresql_refuses_currencies_that_only_balance_together() -> None:
    ids = accounts_ensure(accounts=[CLEARING, SELLER_JPY])
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        with connection.cursor() as cursor:
            journal = _raw_journal(cursor, "mixed")
            _raw_entry(cursor, journal, ids[CLEARING.code], "D", 100, "EUR")
            _raw_entry(cursor, journal, ids[SELLER_JPY.code], "C", 100, "JPY")
            _commit_point(cursor)


def test_postgresql_refuses_a_journal_without_entries() -> None:
    with pytest.raises(IntegrityError, match="has no entries"), transaction.atomic():
        with connection.cursor() as cursor:
            _raw_journal(cursor, "empty")
            _commit_point(cursor)


def test_postgresql_refuses_an_entry_in_another_currency_than_its_account() -> None:
    ids = accounts_ensure(accounts=[CLEARING, SELLER])
    with pytest.raises(IntegrityError, match="ledger_entry_account_currency_fk"), transaction.atomic():
        with connection.cursor() as cursor:
            journal = _raw_journal(cursor, "wrong-currency")
            _raw_entry(cursor, journal, ids[CLEARING.code], "D", 100, "USD")


def test_postgresql_accepts_a_balanced_journal_written_by_hand() -> None:
    ids = accounts_ensure(accounts=[CLEARING, SELLER])
    with transaction.atomic(), connection.cursor() as cursor:
        journal = _raw_journal(cursor, "by-hand")
        _raw_entry(cursor, journal, ids[CLEARING.code], "D", 100, "EUR")
        _raw_entry(cursor, journal, ids[SELLER.code], "C", 100, "EUR")
        _commit_point(cursor)
    assert account_balance(code=SELLER.code) == 100


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET amount = amount + 1",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_journaltransaction SET memo = 'rewritten'",
        "DELETE FROM ledger_journaltransaction",
        "TRUNCATE ledger_entry CASCADE",
        "TRUNCATE ledger_journaltransaction CASCADE",
    ],
)
def test_postgresql_keeps_the_ledger_append_only(statement: str) -> None:
    journal_post(kind="payin", reference="po_4", lines=payin("po_4"), actor="test")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL ledger.allow_truncate = 'off'")
        _commit_point(cursor)  # PostgreSQL itself refuses TRUNCATE while checks are pending: run them first
        cursor.execute(statement)
    assert account_balance(code=CLEARING.code) == 1000
    assert Entry.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_postgresql_refuses_entries_added_to_a_committed_journal() -> None:
    # given a committed posting
    posting = journal_post(kind="payin", reference="po_5", lines=payin("po_5"), actor="test")
    ids = accounts_ensure(accounts=[CLEARING, SELLER])

    # when a later transaction slips a balanced pair into it, then COMMIT refuses it
    with pytest.raises(DatabaseError, match="corrections are new postings"), transaction.atomic():
        with connection.cursor() as cursor:
            _raw_entry(cursor, posting.journal_id, ids[CLEARING.code], "D", 5000, "EUR")
            _raw_entry(cursor, posting.journal_id, ids[SELLER.code], "C", 5000, "EUR")
    assert Entry.objects.filter(journal_id=posting.journal_id).count() == 3
