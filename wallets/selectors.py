from __future__ import annotations

from dataclasses import dataclass

from ledger.selectors import account_balances
from wallets.models import Bucket, Wallet
from wallets.services import wallet_account


@dataclass(frozen=True)
class WalletBalance:
    currency: str
    pending: int  # minor units
    available: int
    reserved: int
    held: int


def wallet_balances(*, seller_account: str) -> list[WalletBalance]:
    """The seller's balances per currency, from the wallet rows (kept equal to the ledger by PostgreSQL)."""
    rows = Wallet.objects.filter(seller_id=seller_account).order_by("currency")
    return [WalletBalance(w.currency, w.pending, w.available, w.reserved, w.held) for w in rows]


def wallet_ledger_balances(*, seller_account: str, currency: str) -> WalletBalance:
    """The same balances summed from the ledger's entries: what ledger_check compares the wallet with."""
    codes = {bucket: wallet_account(seller_account, currency, bucket).code for bucket in Bucket}
    found = account_balances(codes=list(codes.values()))
    return WalletBalance(currency, *(found[codes[bucket]] for bucket in Bucket))
