from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from ledger.models import AccountType, Side
from ledger.services import AccountRef, Line, Posting, accounts_ensure, journal_post
from wallets.errors import InsufficientFunds, WalletMappingError
from wallets.fees import platform_fee
from wallets.models import Bucket, Seller, Wallet, WalletAccount

# The journal kind of a pay-in posting; its reference is the payment_order_id.
PAYIN_KIND = "payin"

# Seller accounts this process has seen committed. Sellers are never deleted (orders protect them), so a seller seen
# once exists for good, and most payments name sellers we know: they skip the INSERT entirely.
_known_sellers: set[str] = set()
# Wallets (seller, currency) this process has seen committed, with their accounts mapped: same reasoning.
_known_wallets: set[tuple[str, str]] = set()


def sellers_ensure(*, accounts: Iterable[str]) -> None:
    """Register any of these seller accounts not yet known, in one statement, safe against concurrent callers.

    Sorted, so that two payments naming the same new sellers insert them in the same order and cannot deadlock.
    """
    unknown = sorted(set(accounts) - _known_sellers)
    if not unknown:
        return
    if len(_known_sellers) > 100_000:  # a bound on memory; forgetting only costs an INSERT that does nothing
        _known_sellers.clear()
    Seller.objects.bulk_create([Seller(account=account) for account in unknown], ignore_conflicts=True)
    # Only once committed: a rolled-back transaction takes its new sellers with it.
    transaction.on_commit(lambda: _known_sellers.update(unknown))


def wallet_account(seller_account: str, currency: str, bucket: Bucket) -> AccountRef:
    """The ledger account behind one bucket of a seller's wallet (liabilities: money the platform owes the seller)."""
    return AccountRef(f"seller_{bucket.value}:{seller_account}:{currency}", AccountType.LIABILITY, currency)


def psp_clearing_account(currency: str, psp: str | None = None) -> AccountRef:
    """What the PSP owes us: charges captured and not yet settled to our bank."""
    return AccountRef(f"psp_clearing:{psp or settings.PAYMENT_PSP}:{currency}", AccountType.ASSET, currency)


def platform_fees_account(currency: str) -> AccountRef:
    return AccountRef(f"platform_fees:{currency}", AccountType.REVENUE, currency)


def wallet_ensure(*, seller_account: str, currency: str) -> None:
    """Create the seller's wallet in ``currency`` and map its three ledger accounts, before anything posts to them."""
    if (seller_account, currency) in _known_wallets:
        return
    with transaction.atomic(savepoint=False):
        sellers_ensure(accounts=[seller_account])
        Wallet.objects.bulk_create([Wallet(seller_id=seller_account, currency=currency)], ignore_conflicts=True)
        wallet_id = Wallet.objects.values_list("pk", flat=True).get(seller_id=seller_account, currency=currency)
        refs = {bucket: wallet_account(seller_account, currency, bucket) for bucket in Bucket}
        ids = accounts_ensure(accounts=list(refs.values()))
        WalletAccount.objects.bulk_create(
            [WalletAccount(account_id=ids[ref.code], wallet_id=wallet_id, bucket=b) for b, ref in refs.items()],
            ignore_conflicts=True,
        )
        mapped = dict(WalletAccount.objects.filter(wallet_id=wallet_id).values_list("bucket", "account_id"))
        if mapped != {bucket: ids[ref.code] for bucket, ref in refs.items()}:
            # ignore_conflicts hides a mapping that disagrees; a wallet must not be trusted on top of one.
            raise WalletMappingError(f"wallet {seller_account} {currency} is mapped to other accounts: {mapped}")
    transaction.on_commit(lambda: _known_wallets.add((seller_account, currency)))


@dataclass(frozen=True)
class PayinSplit:
    gross: int
    fee: int

    @property
    def seller_share(self) -> int:
        return self.gross - self.fee


def payin_post(*, seller_account: str, currency: str, gross: int, reference: str, actor: str) -> Posting:
    """A captured charge (DESIGN.md "Pay-in success"): PSP clearing is owed the gross, the seller's pending funds get
    their share, the platform its fee. Idempotent per ``reference`` (the payment_order_id)."""
    split = PayinSplit(gross=gross, fee=platform_fee(gross, currency))
    lines = [Line(psp_clearing_account(currency), Side.DEBIT, gross)]
    if split.seller_share:
        lines.append(Line(wallet_account(seller_account, currency, Bucket.PENDING), Side.CREDIT, split.seller_share))
    if split.fee:
        lines.append(Line(platform_fees_account(currency), Side.CREDIT, split.fee))
    with transaction.atomic(savepoint=False):
        wallet_ensure(seller_account=seller_account, currency=currency)
        return journal_post(kind=PAYIN_KIND, reference=reference, lines=lines, actor=actor)


def funds_release(*, seller_account: str, currency: str, amount: int, reference: str, actor: str) -> Posting:
    """Move ``amount`` of the seller's funds from pending to available (delivery confirmed, or the hold is over).

    The wallet's CHECK refuses a release of more than is pending, in the posting's own statement, whatever runs at
    the same time; the savepoint keeps the caller's transaction usable after that refusal.
    """
    lines = [
        Line(wallet_account(seller_account, currency, Bucket.PENDING), Side.DEBIT, amount),
        Line(wallet_account(seller_account, currency, Bucket.AVAILABLE), Side.CREDIT, amount),
    ]
    wallet_ensure(seller_account=seller_account, currency=currency)
    try:
        with transaction.atomic():
            # The reference names the release within this seller's wallet: two sellers' releases never collide.
            return journal_post(
                kind="release", reference=f"{seller_account}:{currency}:{reference}", lines=lines, actor=actor
            )
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != "wallet_pending_not_negative":
            raise
        raise InsufficientFunds(f"{seller_account} has less than {amount} pending in {currency}") from exc
