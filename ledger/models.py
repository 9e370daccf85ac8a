"""The double-entry ledger: accounts, journal transactions and their entries, in integer minor units.

PostgreSQL keeps it honest whatever code runs (migration 0002): a journal transaction must balance per currency at
COMMIT, an entry's currency is its account's, and entries and journal transactions are never updated or deleted.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
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
        indexes = [
            models.Index(fields=["account", "effective_at"], name="ledger_entry_account_time_idx"),
            # Every account's entries of a time range (closing a day, the trial balance since the last close). Entries
            # arrive in time order, so a block range index answers that for a few pages of index and almost no cost
            # on posting, where a B-tree would add one more index entry to every row.
            BrinIndex(fields=["effective_at"], name="ledger_entry_time_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.amount} {self.currency} {self.account_id}"


# --- Closed days: the balances as of any moment without summing every entry since the first -------------------------
#
# A balance is a sum over entries; on a ledger of millions of entries that sum is seconds for a hot account (PSP
# clearing) and for the trial balance. Entries are append-only (migration 0002), so the sum of a day that is over
# cannot change unless an entry is posted later with an effective time inside it (a back-dated correction, or a
# posting whose transaction began before midnight). The ledger therefore keeps:
#
# - ``LedgerClosing.closed_through``: the last day (UTC) whose movements are rolled up; a job (``ledger_days_close``)
#   moves it forward once a day is over;
# - ``AccountDay``: each account's debits and credits on each closed day it moved;
# - ``AccountMonth``: the same per month (of its closed days), so that a moment months back sums months, not days;
# - ``AccountClosedTotal``: each account's debits and credits over all closed days.
#
# A balance as of T is then the closed part (totals, or the months and then the days before T's day) plus the entries
# from there to T: a day's entries at most for a past moment, what was posted since the last close for now. Exact,
# never an estimate: a posting back-dated into a closed day adds itself to the three tables in its own transaction (a
# trigger, migration 0007), and the close takes a SHARE lock on the entries while it sums a day, so no posting is in
# flight, uncounted, across the move of the boundary. Postings into open days (all of them, in practice) write
# nothing more: no row that every posting must update, which would serialise the hot accounts.


class LedgerClosing(models.Model):
    """The one row that says through which day the rollup tables hold every entry (NULL: none yet)."""

    closed_through = models.DateField(null=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="ledger_closing_one_row")]

    def __str__(self) -> str:
        return f"closed through {self.closed_through}"


class AccountDay(models.Model):
    """One account's movements on one closed day (UTC). Maintained by the database and the close job only."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    day = models.DateField()
    debits = models.BigIntegerField()
    credits = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "day"], name="ledger_account_day_unique")]
        # The trial balance as of a day reads the days before it, of every account.
        indexes = [models.Index(fields=["day"], name="ledger_account_day_day_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day}: D {self.debits} C {self.credits}"


class AccountMonth(models.Model):
    """One account's movements over the closed days of one month (``month``: its first day): the sum of its
    ``AccountDay`` rows of that month, kept with them."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+", db_index=False)
    month = models.DateField()
    debits = models.BigIntegerField()
    credits = models.BigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "month"], name="ledger_account_month_unique")]
        indexes = [models.Index(fields=["month"], name="ledger_account_month_month_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.month:%Y-%m}: D {self.debits} C {self.credits}"


class AccountClosedTotal(models.Model):
    """One account's movements over every closed day: the sum of its ``AccountDay`` rows, kept with them."""

    account = models.OneToOneField(Account, on_delete=models.PROTECT, primary_key=True, related_name="+")
    debits = models.BigIntegerField()
    credits = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.account_id}: D {self.debits} C {self.credits}"
