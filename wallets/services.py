from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from wallets.models import Seller

# Seller accounts this process has seen committed. Sellers are never deleted (orders protect them), so a seller seen
# once exists for good, and most payments name sellers we know: they skip the INSERT entirely.
_known_accounts: set[str] = set()


def sellers_ensure(*, accounts: Iterable[str]) -> None:
    """Register any of these seller accounts not yet known, in one statement, safe against concurrent callers.

    Sorted, so that two payments naming the same new sellers insert them in the same order and cannot deadlock.
    """
    unknown = sorted(set(accounts) - _known_accounts)
    if not unknown:
        return
    if len(_known_accounts) > 100_000:  # a bound on memory; forgetting only costs an INSERT that does nothing
        _known_accounts.clear()
    Seller.objects.bulk_create([Seller(account=account) for account in unknown], ignore_conflicts=True)
    # Only once committed: a rolled-back transaction takes its new sellers with it.
    transaction.on_commit(lambda: _known_accounts.update(unknown))
