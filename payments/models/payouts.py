from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django_fsm import FSMField, transition

from payments.ids import new_public_id
from payments.models.fsm import ConcurrentTransitions
from wallets.models import Seller


def _new_payout_id() -> str:
    return new_public_id("pyo")


class PayoutStatus(models.TextChoices):
    NOT_STARTED = "NOT_STARTED"
    EXECUTING = "EXECUTING"
    UNKNOWN = "UNKNOWN"  # the transfer request left and no answer came; a retry with the same key or a lookup ends it
    PAID = "PAID"
    FAILED = "FAILED"


OPEN_PAYOUT_STATUSES = frozenset({PayoutStatus.NOT_STARTED, PayoutStatus.EXECUTING, PayoutStatus.UNKNOWN})


class Payout(ConcurrentTransitions, models.Model):
    """One transfer of a seller's available funds in one currency to their payout account (DESIGN.md "Pay-out").

    The funds are reserved when the payout is created, in the same transaction, under the wallet's row lock; the
    partial unique index allows one open payout per wallet. Together they are why two payout runs started at once
    pay each seller once. ``payout_id`` is the PSP's idempotency key.
    """

    payout_id = models.CharField(max_length=40, unique=True, default=_new_payout_id, editable=False)
    seller = models.ForeignKey(
        Seller, on_delete=models.PROTECT, to_field="account", db_column="seller_account", related_name="payouts"
    )
    currency = models.CharField(max_length=3)  # the wallet's: what is taken from the seller's balance
    amount = models.BigIntegerField()  # minor units of ``currency``
    # What the seller receives: the same as above, or converted at ``fx_rate`` (target per unit of ``currency``).
    payout_currency = models.CharField(max_length=3)
    payout_amount = models.BigIntegerField()
    fx_rate = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    destination = models.CharField(max_length=255, blank=True, default="", db_default="")  # acct_…
    status = FSMField(default=PayoutStatus.NOT_STARTED, choices=PayoutStatus.choices, protected=True)
    psp_reference = models.CharField(max_length=255, blank=True, default="", db_default="")  # tr_…
    failure_code = models.CharField(max_length=100, blank=True, default="", db_default="")
    failure_reason = models.TextField(blank=True, default="", db_default="")
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    actor = models.CharField(max_length=100)  # who asked: the schedule, an API client, a finance person
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0, payout_amount__gt=0), name="payout_amounts_positive"
            ),
            models.UniqueConstraint(
                fields=["seller", "currency"],
                condition=models.Q(status__in=sorted(OPEN_PAYOUT_STATUSES)),
                name="payout_one_open_per_wallet",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "updated_at"], name="payout_status_idx"),
            models.Index(fields=["seller", "-created_at"], name="payout_seller_idx"),
            models.Index(fields=["created_at"], name="payout_created_idx"),  # the metrics' window
            # Found by the PSP's id (the console's search); partial: a payout has none until it is sent.
            models.Index(
                fields=["psp_reference"], condition=~models.Q(psp_reference=""), name="payout_psp_reference_idx"
            ),
            # The console's currency filters: their choices are read from these, value by value.
            models.Index(fields=["currency"], name="payout_currency_idx"),
            models.Index(fields=["payout_currency"], name="payout_payout_currency_idx"),
        ]
        permissions = [("trigger_payout", "Can pay a seller out now")]

    def __str__(self) -> str:
        return self.payout_id

    @transition(field=status, source=PayoutStatus.NOT_STARTED, target=PayoutStatus.EXECUTING)
    def start_execution(self) -> None:
        """Committed before the PSP call, so a crash after it is visible to the recovery sweep."""

    @transition(field=status, source=PayoutStatus.EXECUTING, target=PayoutStatus.UNKNOWN)
    def mark_unknown(self) -> None:
        pass

    @transition(field=status, source=[PayoutStatus.EXECUTING, PayoutStatus.UNKNOWN], target=PayoutStatus.PAID)
    def mark_paid(self) -> None:
        pass

    # From NOT_STARTED too: a seller with no payout account is refused before anything is sent.
    @transition(
        field=status,
        source=[PayoutStatus.NOT_STARTED, PayoutStatus.EXECUTING, PayoutStatus.UNKNOWN],
        target=PayoutStatus.FAILED,
    )
    def mark_failed(self, *, failure_code: str, reason: str) -> None:
        self.failure_code = failure_code
        self.failure_reason = reason
