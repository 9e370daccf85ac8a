from __future__ import annotations

from collections.abc import Iterable

from wallets.models import Seller


def sellers_ensure(*, accounts: Iterable[str]) -> None:
    """Register any of these seller accounts not yet known, in one statement, safe against concurrent callers.

    Sorted, so that two payments naming the same new sellers insert them in the same order and cannot deadlock.
    """
    Seller.objects.bulk_create([Seller(account=account) for account in sorted(set(accounts))], ignore_conflicts=True)
