from __future__ import annotations

from django.db import models
from django.db.models.functions import Now

from ledger.models import Account

SELLER_ACCOUNT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class Seller(models.Model):
    """A marketplace seller, known by the storefront's account id (``seller_7``).

    Sellers are registered the first time a payment names them: the storefront owns its seller list, and we keep
    the row that wallets, payouts and the finance console hang off.
    """

    account = models.CharField(max_length=64, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    # Where payouts go: the seller's account at the payout provider (a Stripe connected account, ``acct_…``); no
    # payout is sent until it is set. And the currency the seller is paid in, when not their wallet's own.
    payout_account = models.CharField(max_length=255, blank=True, default="", db_default="")
    payout_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    created_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return self.display_name or self.account


class Bucket(models.TextChoices):
    """Where a seller's money stands: pending until released, then available, reserved while a payout runs, held
    while a buyer disputes the charge it came from."""

    PENDING = "pending"
    AVAILABLE = "available"
    RESERVED = "reserved"
    HELD = "held"


class Wallet(models.Model):
    """One seller's balances in one currency: a projection of three ledger accounts, never written on its own.

    PostgreSQL keeps it so (migrations 0003 and 0005): every ledger entry on one of the wallet's accounts updates it
    in the same statement, under the row's lock, and any other UPDATE of its amounts is refused. The CHECKs are what
    stop a payout from spending money the seller does not have, whatever the race.

    ``available`` is the one bucket that may be negative: money taken back from a seller after it was paid out (a
    refund, a dispute) is a debt, netted off by the funds released next (migration 0006). Only those postings may
    take it below zero; a payout reservation that would is refused like a CHECK violation.
    """

    seller = models.ForeignKey(
        Seller, on_delete=models.PROTECT, to_field="account", db_column="seller_account", related_name="wallets"
    )
    currency = models.CharField(max_length=3)
    pending = models.BigIntegerField(default=0, db_default=0)  # minor units
    available = models.BigIntegerField(default=0, db_default=0)
    reserved = models.BigIntegerField(default=0, db_default=0)
    held = models.BigIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["seller", "currency"], name="wallet_one_per_seller_currency"),
            models.CheckConstraint(condition=models.Q(pending__gte=0), name="wallet_pending_not_negative"),
            models.CheckConstraint(condition=models.Q(reserved__gte=0), name="wallet_reserved_not_negative"),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="wallet_held_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.seller_id} {self.currency}"


class WalletAccount(models.Model):
    """Which ledger account backs which bucket of which wallet."""

    account = models.OneToOneField(Account, on_delete=models.PROTECT, primary_key=True, related_name="+")
    # No index of its own: the unique (wallet, bucket) index starts with it.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="accounts", db_index=False)
    bucket = models.CharField(max_length=10, choices=Bucket.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["wallet", "bucket"], name="wallet_account_one_per_bucket"),
            models.CheckConstraint(condition=models.Q(bucket__in=Bucket.values), name="wallet_account_bucket_known"),
        ]

    def __str__(self) -> str:
        return f"{self.wallet} {self.bucket}"
