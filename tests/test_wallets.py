from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.selectors import account_balance, trial_balances
from wallets.errors import InsufficientFunds
from wallets.fees import platform_fee
from wallets.models import Wallet
from wallets.selectors import wallet_balances, wallet_ledger_balances
from wallets.services import funds_release, payin_post, platform_fees_account, psp_clearing_account

pytestmark = pytest.mark.django_db


def test_a_payin_splits_the_gross_between_seller_and_platform(settings: object) -> None:
    settings.PLATFORM_FEE_PERCENT = 5  # type: ignore[attr-defined]
    settings.PLATFORM_FEE_FIXED = {"EUR": 30}  # type: ignore[attr-defined]

    posting = payin_post(seller_account="seller_7", currency="EUR", gross=1999, reference="po_1", actor="test")

    fee = 100 + 30  # 5 % of 1999 is 99.95, rounded half up to 100, plus the fixed 30
    assert posting.created
    assert account_balance(code=psp_clearing_account("EUR").code) == 1999
    assert account_balance(code=platform_fees_account("EUR").code) == fee
    (eur,) = wallet_balances(seller_account="seller_7")
    assert (eur.currency, eur.pending, eur.available, eur.reserved) == ("EUR", 1999 - fee, 0, 0)


def test_a_payin_posted_twice_counts_once() -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=1000, reference="po_2", actor="test")
    again = payin_post(seller_account="seller_7", currency="EUR", gross=1000, reference="po_2", actor="test")

    assert not again.created
    assert wallet_balances(seller_account="seller_7")[0].pending == 1000 - platform_fee(1000, "EUR")


def test_release_moves_funds_from_pending_to_available() -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=10_000, reference="po_3", actor="test")
    pending = wallet_balances(seller_account="seller_7")[0].pending

    funds_release(seller_account="seller_7", currency="EUR", amount=pending, reference="po_3", actor="test")

    (eur,) = wallet_balances(seller_account="seller_7")
    assert (eur.pending, eur.available) == (0, pending)
    assert wallet_ledger_balances(seller_account="seller_7", currency="EUR") == eur


def test_releasing_more_than_is_pending_is_refused_and_changes_nothing() -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=1000, reference="po_4", actor="test")
    before = wallet_balances(seller_account="seller_7")

    with transaction.atomic():
        with pytest.raises(InsufficientFunds):
            funds_release(seller_account="seller_7", currency="EUR", amount=10_000, reference="r", actor="test")
        # the caller's transaction is still usable
        assert wallet_balances(seller_account="seller_7") == before

    assert wallet_ledger_balances(seller_account="seller_7", currency="EUR") == before[0]


def test_wallets_in_two_currencies_are_separate() -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=1000, reference="po_eur", actor="test")
    payin_post(seller_account="seller_7", currency="JPY", gross=700, reference="po_jpy", actor="test")

    assert [b.currency for b in wallet_balances(seller_account="seller_7")] == ["EUR", "JPY"]
    assert all(tb.balanced for tb in trial_balances())


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE wallets_wallet SET available = available + 100",
        "INSERT INTO wallets_wallet (seller_account, currency, pending, available, reserved, updated_at)"
        " VALUES ('seller_7', 'USD', 0, 500, 0, now())",
    ],
    ids=["update", "insert with money"],
)
def test_a_wallet_changes_only_through_the_ledger(statement: str) -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=1000, reference="po_5", actor="test")
    with pytest.raises(DatabaseError, match=r"ledger postings|starts empty"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement)
    assert Wallet.objects.get(seller_id="seller_7", currency="EUR").available == 0


@given(gross=st.integers(min_value=1, max_value=10**15), currency=st.sampled_from(["EUR", "JPY", "KWD"]))
@settings(max_examples=300)
def test_the_fee_never_exceeds_the_gross(gross: int, currency: str) -> None:
    assert 0 <= platform_fee(gross, currency) <= gross


def test_an_overdrawn_release_is_caught_by_the_database_not_only_by_code() -> None:
    payin_post(seller_account="seller_9", currency="EUR", gross=100, reference="po_6", actor="test")
    with pytest.raises(IntegrityError, match="wallet_pending_not_negative"), transaction.atomic():
        from ledger.models import Side
        from ledger.services import Line, journal_post
        from wallets.models import Bucket
        from wallets.services import wallet_account

        journal_post(
            kind="raw",
            reference="overdraw",
            lines=[
                Line(wallet_account("seller_9", "EUR", Bucket.PENDING), Side.DEBIT, 10_000),
                Line(wallet_account("seller_9", "EUR", Bucket.AVAILABLE), Side.CREDIT, 10_000),
            ],
            actor="test",
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE wallets_wallet SET seller_account = 'seller_9'",
        "UPDATE wallets_wallet SET currency = 'USD'",
        "DELETE FROM wallets_wallet",
        "UPDATE wallets_walletaccount SET bucket = 'available' WHERE bucket = 'pending'",
        "DELETE FROM wallets_walletaccount",
        "TRUNCATE wallets_walletaccount, wallets_wallet",
    ],
)
def test_a_wallet_and_its_accounts_are_never_rewritten(statement: str) -> None:
    payin_post(seller_account="seller_7", currency="EUR", gross=1000, reference="po_7", actor="test")
    seller_9_before = wallet_balances(seller_account="seller_9")
    with pytest.raises(DatabaseError, match="only ever grow"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL ledger.allow_truncate = 'off'")
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE is refused while checks are pending
        cursor.execute(statement)
    assert wallet_balances(seller_account="seller_9") == seller_9_before
    assert (
        wallet_ledger_balances(seller_account="seller_7", currency="EUR")
        == wallet_balances(seller_account="seller_7")[0]
    )


def test_an_account_with_entries_cannot_be_mapped_to_a_wallet_late() -> None:
    from ledger.models import Side
    from ledger.services import Line, journal_post
    from wallets.models import Bucket
    from wallets.services import wallet_account, wallet_ensure

    journal_post(
        kind="manual",
        reference="before-the-wallet",
        lines=[
            Line(psp_clearing_account("EUR"), Side.DEBIT, 500),
            Line(wallet_account("seller_late", "EUR", Bucket.PENDING), Side.CREDIT, 500),
        ],
        actor="test",
    )
    with pytest.raises(IntegrityError, match="already has entries"), transaction.atomic():
        wallet_ensure(seller_account="seller_late", currency="EUR")


def test_two_sellers_releases_with_the_same_reference_do_not_collide() -> None:
    for seller in ("seller_a", "seller_b"):
        payin_post(seller_account=seller, currency="EUR", gross=1000, reference=f"po_{seller}", actor="test")
    funds_release(seller_account="seller_a", currency="EUR", amount=100, reference="hold-2026-11", actor="test")
    funds_release(seller_account="seller_b", currency="EUR", amount=200, reference="hold-2026-11", actor="test")

    assert wallet_balances(seller_account="seller_a")[0].available == 100
    assert wallet_balances(seller_account="seller_b")[0].available == 200


@pytest.mark.parametrize(
    ("gross", "currency", "expected"),
    [
        (1000, "EUR", 50 + 30),  # 5 % + 30
        (10, "EUR", 10),  # 0.5 + 30 is more than the gross: capped at it
        (1010, "EUR", 51 + 30),  # 50.5 rounds half up
        (700, "JPY", 25),  # JPY's own 3.5 %: 24.5 rounds half up, no fixed part
    ],
)
def test_the_fee_follows_the_currency_rule_and_rounds_half_up(
    settings: Any, gross: int, currency: str, expected: int
) -> None:
    settings.PLATFORM_FEE_PERCENT = Decimal(5)
    settings.PLATFORM_FEE_PERCENT_BY_CURRENCY = {"JPY": Decimal("3.5")}
    settings.PLATFORM_FEE_FIXED = {"EUR": Decimal(30)}
    assert platform_fee(gross, currency) == expected
