"""The double-entry ledger: accounts, journal transactions and their entries, in integer minor units.

PostgreSQL keeps it honest whatever code runs (migration 0002): a journal transaction must balance per currency at
COMMIT, an entry's currency is its account's, and entries and journal transactions are never updated or deleted.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class AccountType(models.TextChoices):
    ASSET = "asset"
    LIABILITY = "liability"
    REVENUE = "revenue"
    EXPENSE = "expense"
    EQUITY = "equity"


# Debit-normal accounts grow with debits; the others (liability, revenue, equity) grow with credits.
DEBIT_NORMAL = frozenset({AccountType.ASSET, AccountType.EXPENSE})


class Side(models.TextChoices):
    DEBIT = "D"
    CREDIT = "C"


class Account(models.Model):
    """One account of the chart (DESIGN.md "Ledger"), one currency: ``psp_clearing:stripe:EUR``."""

    code = models.CharField(max_length=150, unique=True)
    type = models.CharField(max_length=10, choices=AccountType.choices)
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            # The target of the entries' (account, currency) foreign key: an entry's currency is its account's.
            models.UniqueConstraint(fields=["id", "currency"], name="ledger_account_id_currency"),
            models.CheckConstraint(condition=models.Q(type__in=AccountType.values), name="ledger_account_type_known"),
        ]

    def __str__(self) -> str:
        return self.code


class JournalTransaction(models.Model):
    """One business event's posting. (kind, reference) names the event: posting it twice posts it once."""

    kind = models.CharField(max_length=64)
    reference = models.CharField(max_length=200)
    effective_at = models.DateTimeField(db_default=Now())
    memo = models.TextField(blank=True, default="", db_default="")
    actor = models.CharField(max_length=100)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "reference"], name="ledger_journal_kind_reference")]
        # A reference alone (the console's search, a payment's page: its postings of every kind). The unique index
        # above starts with the kind, and still serves the kind filter.
        indexes = [models.Index(fields=["reference"], name="ledger_journal_reference_idx")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.reference}"


class Entry(models.Model):
    journal = models.ForeignKey(JournalTransaction, on_delete=models.PROTECT, related_name="entries")
    # No single-column foreign key constraint: the (account_id, currency) one (migration 0002) already guarantees the
    # account exists, and a second key would take a second share lock on the hot accounts' rows for every entry.
    # No index of its own either: the (account, effective_at) index starts with it.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="entries", db_constraint=False, db_index=False
    )
    side = models.CharField(max_length=1, choices=Side.choices)
    amount = models.BigIntegerField()  # minor units of ``currency``
    currency = models.CharField(max_length=3)
    # The journal's effective time, copied so that a balance as of any moment reads one index.
    effective_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="ledger_entry_amount_positive"),
            models.CheckConstraint(condition=models.Q(side__in=Side.values), name="ledger_entry_side_known"),
        ]
        indexes = [models.Index(fields=["account", "effective_at"], name="ledger_entry_account_time_idx")]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.currency} {self.account_id}"
