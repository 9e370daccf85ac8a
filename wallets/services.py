from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction

from ledger.models import AccountType, Side
from ledger.services import AccountRef, Line, Posting, accounts_ensure, journal_post, journal_post_many
from wallets.errors import InsufficientFunds, WalletMappingError
from wallets.fees import platform_fee
from wallets.models import Bucket, Seller, Wallet, WalletAccount

# The journal kind of a pay-in posting; its reference is the payment_order_id.
PAYIN_KIND = "payin"
# The postings that may take a seller's available balance below zero: money taken back after it was paid out.
# Migration 0006 holds PostgreSQL to the same list.
DEBT_KINDS = ("refund", "dispute_hold")

# Seller accounts this process has seen committed. Sellers are never deleted (orders protect them), so a seller seen
# once exists for good, and most payments name sellers we know: they skip the INSERT entirely.
_known_sellers: set[str] = set()
# Wallets (seller, currency) this process has seen committed, with their accounts mapped: same reasoning.
_known_wallets: set[tuple[str, str]] = set()


def sellers_ensure(*, accounts: Iterable[str]) -> None:
    """Register any of these seller accounts not yet known, in one statement, safe against concurrent callers."""
    unknown = sellers_unknown(accounts)
    if not unknown:
        return
    Seller.objects.bulk_create([Seller(account=account) for account in unknown], ignore_conflicts=True)
    sellers_registered(unknown)


def sellers_unknown(accounts: Iterable[str]) -> list[str]:
    """The accounts this process has not seen committed, to be registered with ``SELLERS_REGISTER_SQL`` or
    ``sellers_ensure``. Sorted, so that two payments naming the same new sellers insert them in the same order and
    cannot deadlock."""
    return sorted(set(accounts) - _known_sellers)


def sellers_registered(accounts: list[str]) -> None:
    """Remember sellers just registered, once the transaction commits: a rolled-back one takes them with it."""
    if not accounts:
        return
    if len(_known_sellers) > 100_000:  # a bound on memory; forgetting only costs an INSERT that does nothing
        _known_sellers.clear()
    transaction.on_commit(lambda: _known_sellers.update(accounts))


# sellers_ensure as a common table expression, for a statement that writes a seller's first order with it (the
# payment's, payments/services.py): ``%(new_sellers)s`` is sellers_unknown(...), and ``{source}`` may guard the
# writes (FROM a row that must exist, WHERE it allows them). Concurrent callers meet at the unique account.
SELLERS_REGISTER_SQL = """sellers AS (
    INSERT INTO wallets_seller (account, display_name)
    SELECT account, '' FROM {source}unnest(%(new_sellers)s::varchar[]) AS account{guard}
    ORDER BY account
    ON CONFLICT (account) DO NOTHING
)"""


def wallet_account(seller_account: str, currency: str, bucket: Bucket) -> AccountRef:
    """The ledger account behind one bucket of a seller's wallet (liabilities: money the platform owes the seller)."""
    return AccountRef(f"seller_{bucket.value}:{seller_account}:{currency}", AccountType.LIABILITY, currency)


def psp_clearing_account(currency: str, psp: str | None = None) -> AccountRef:
    """What the PSP owes us: charges captured and not yet settled to our bank."""
    return AccountRef(f"psp_clearing:{psp or settings.PAYMENT_PSP}:{currency}", AccountType.ASSET, currency)


def platform_fees_account(currency: str) -> AccountRef:
    return AccountRef(f"platform_fees:{currency}", AccountType.REVENUE, currency)


def psp_fees_account(currency: str) -> AccountRef:
    return AccountRef(f"psp_fees:{currency}", AccountType.EXPENSE, currency)


def suspense_account(currency: str) -> AccountRef:
    """Differences nobody can explain yet, awaiting a person (DESIGN.md "Ledger")."""
    return AccountRef(f"suspense:{currency}", AccountType.ASSET, currency)


def post_guarded(*, kind: str, reference: str, lines: list[Line], actor: str, seller_account: str) -> Posting:
    """``journal_post`` for a posting that takes from a seller's guarded buckets: a wallet's CHECK (or its
    available-balance guard) refusing the posting becomes InsufficientFunds, and the savepoint keeps the caller's
    transaction usable after it."""
    try:
        with transaction.atomic():
            return journal_post(kind=kind, reference=reference, lines=lines, actor=actor)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or ""
        if not constraint.startswith("wallet_") or not constraint.endswith("_not_negative"):
            raise
        bucket = constraint.removeprefix("wallet_").removesuffix("_not_negative")
        raise InsufficientFunds(f"{seller_account} has too little {bucket} for {kind} {reference}") from exc


def wallet_ensure(*, seller_account: str, currency: str) -> None:
    """Create the seller's wallet in ``currency`` and map its ledger accounts (one per bucket), before anything
    posts to them."""
    if (seller_account, currency) in _known_wallets:
        return
    refs = {bucket: wallet_account(seller_account, currency, bucket) for bucket in Bucket}
    # A wallet that exists already, mapped as it must be, needs nothing: one query instead of six, for a process that
    # has not seen it commit (a new worker, or many postings in one transaction: a reconciliation run's captures).
    mapped_as_wanted = _mapping_wanted(seller_account, currency)
    found = WalletAccount.objects.filter(wallet__seller_id=seller_account, wallet__currency=currency).values_list(
        "bucket", "account__code", "account__type", "account__currency"
    )
    if set(found) == mapped_as_wanted:
        transaction.on_commit(lambda: _known_wallets.add((seller_account, currency)))
        return
    with transaction.atomic(savepoint=False):
        sellers_ensure(accounts=[seller_account])
        Wallet.objects.bulk_create([Wallet(seller_id=seller_account, currency=currency)], ignore_conflicts=True)
        wallet_id = Wallet.objects.values_list("pk", flat=True).get(seller_id=seller_account, currency=currency)
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


def wallets_ensure(*, seller_accounts: Iterable[str], currency: str) -> None:
    """``wallet_ensure`` for many sellers: one query finds those whose wallet is mapped as it must be already (all of
    them, on any day but a seller's first); only the others go through ``wallet_ensure``, one at a time."""
    wanted = sorted({seller for seller in seller_accounts if (seller, currency) not in _known_wallets})
    if not wanted:
        return
    found: dict[str, set[tuple[str, str, str, str]]] = {}
    mapped = WalletAccount.objects.filter(wallet__seller_id__in=wanted, wallet__currency=currency).values_list(
        "wallet__seller_id", "bucket", "account__code", "account__type", "account__currency"
    )
    for owner, bucket, code, type_, account_currency in mapped:
        found.setdefault(str(owner), set()).add((bucket, code, type_, account_currency))
    ready = [seller for seller in wanted if found.get(seller) == _mapping_wanted(seller, currency)]
    for seller in sorted(set(wanted) - set(ready)):
        wallet_ensure(seller_account=seller, currency=currency)
    transaction.on_commit(lambda: _known_wallets.update((seller, currency) for seller in ready))


def _mapping_wanted(seller_account: str, currency: str) -> set[tuple[str, str, str, str]]:
    """(bucket, account code, type, currency) of each bucket, as a wallet must be mapped."""
    return {
        (bucket.value, ref.code, ref.type.value, ref.currency)
        for bucket, ref in ((bucket, wallet_account(seller_account, currency, bucket)) for bucket in Bucket)
    }


@dataclass(frozen=True)
class PayinSplit:
    gross: int
    fee: int

    @property
    def seller_share(self) -> int:
        return self.gross - self.fee


def payin_post(
    *, seller_account: str, currency: str, gross: int, reference: str, actor: str, fee: int | None = None
) -> Posting:
    """A captured charge (DESIGN.md "Pay-in success"): PSP clearing is owed the gross, the seller's pending funds get
    their share, the platform its fee (``fee``, else the fee settings' today). Idempotent per ``reference`` (the
    payment_order_id)."""
    split = PayinSplit(gross=gross, fee=platform_fee(gross, currency) if fee is None else fee)
    lines = _payin_lines(seller_account, currency, split)
    with transaction.atomic(savepoint=False):
        wallet_ensure(seller_account=seller_account, currency=currency)
        return journal_post(kind=PAYIN_KIND, reference=reference, lines=lines, actor=actor)


def payins_post(*, payins: Sequence[PayinSpec], currency: str, actor: str) -> list[Posting]:
    """``payin_post`` for many captured charges in one currency at once (the orders a settlement file captured): the
    same lines per charge, posted in one statement."""
    postings = [
        (payin.reference, _payin_lines(payin.seller_account, currency, PayinSplit(gross=payin.gross, fee=payin.fee)))
        for payin in payins
    ]
    with transaction.atomic(savepoint=False):
        wallets_ensure(seller_accounts=[payin.seller_account for payin in payins], currency=currency)
        return journal_post_many(kind=PAYIN_KIND, postings=postings, actor=actor)


def _payin_lines(seller_account: str, currency: str, split: PayinSplit) -> list[Line]:
    lines = [Line(psp_clearing_account(currency), Side.DEBIT, split.gross)]
    if split.seller_share:
        lines.append(Line(wallet_account(seller_account, currency, Bucket.PENDING), Side.CREDIT, split.seller_share))
    if split.fee:
        lines.append(Line(platform_fees_account(currency), Side.CREDIT, split.fee))
    return lines


@dataclass(frozen=True)
class PayinSpec:
    """One captured charge of a batch: the payment order it pays (the posting's reference), whose it is, how much."""

    reference: str
    seller_account: str
    gross: int
    fee: int


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
    # The reference names the release within this seller's wallet: two sellers' releases never collide.
    return post_guarded(
        kind="release",
        reference=f"{seller_account}:{currency}:{reference}",
        lines=lines,
        actor=actor,
        seller_account=seller_account,
    )


def seller_payout_settings_update(
    *, seller_account: str, payout_account: str | None = None, payout_currency: str | None = None
) -> Seller:
    """Set where the seller's payouts go and in which currency; a field not given stays as it is."""
    seller = Seller.objects.get(account=seller_account)
    changed = []
    if payout_account is not None:
        seller.payout_account = payout_account
        changed.append("payout_account")
    if payout_currency is not None:
        seller.payout_currency = payout_currency
        changed.append("payout_currency")
    if changed:
        seller.save(update_fields=changed)
    return seller
