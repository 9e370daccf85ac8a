from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models, transaction
from django.db.models.functions import Now
from django_fsm import FSMField, transition
from djmoney.models.fields import MoneyField

from api.models import ApiClient
from payments.ids import new_public_id
from payments.models.fsm import ConcurrentTransitions
from wallets.models import Seller


def _new_payment_id() -> str:
    return new_public_id("pay")


class OrderStatus(models.TextChoices):
    """DESIGN.md "Order states"."""

    NOT_STARTED = "NOT_STARTED"
    EXECUTING = "EXECUTING"
    PENDING = "PENDING"  # the PSP is still working: 3-D Secure, review, asynchronous methods
    UNKNOWN = "UNKNOWN"  # the request left and no answer came; settled by a retry with the same key or a lookup
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


# An order in one of these needs no more work from the executor; the payment is done when all its orders are here.
FINAL_STATUSES = frozenset(
    {OrderStatus.SUCCESS, OrderStatus.FAILED, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}
)


# Orders whose charge the PSP captured: each has exactly one pay-in posting in the ledger.
CAPTURED_STATUSES = frozenset({OrderStatus.SUCCESS, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})

# The rest: still the executor's, the PSP's or the sweep's. Named, not written as "not final", so that a query on
# them can use the status index (PostgreSQL cannot for NOT IN).
IN_FLIGHT_STATUSES = frozenset(OrderStatus) - FINAL_STATUSES


class PaymentEvent(models.Model):
    """One checkout's payment, split into one payment order per seller (the seeds' payment_event)."""

    class Status(models.TextChoices):
        """Derived from the orders, never stored: the orders are the truth."""

        IN_PROGRESS = "IN_PROGRESS"
        SUCCEEDED = "SUCCEEDED"
        PARTIALLY_SUCCEEDED = "PARTIALLY_SUCCEEDED"
        FAILED = "FAILED"

    payment_id = models.CharField(max_length=40, unique=True, default=_new_payment_id, editable=False)
    # No index of its own: payment_client_created_idx starts with it.
    client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, related_name="payments", db_index=False)
    checkout_id = models.CharField(max_length=64, db_index=True)
    buyer_id = models.CharField(max_length=64, db_index=True)
    buyer_email = models.EmailField(blank=True, default="", db_default="")
    buyer_country = models.CharField(max_length=2, blank=True, default="", db_default="")
    buyer_name = models.CharField(max_length=200, blank=True, default="", db_default="")
    # The buyer's address as the storefront saw it (our caller is the storefront's server): velocity per IP.
    buyer_ip = models.GenericIPAddressField(null=True, blank=True)
    # A PSP payment method token (``pm_…``). Never card data: the API refuses anything card-like.
    payment_method_token = models.CharField(max_length=255, blank=True, default="", db_default="")
    # The PSP's hosted payment page for a checkout (POST /v1/checkouts); empty for a payment by saved method.
    hosted_page_url = models.CharField(max_length=2000, blank=True, default="", db_default="")
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["client", "-created_at"], name="payment_client_created_idx")]

    def __str__(self) -> str:
        return self.payment_id

    @property
    def summary_status(self) -> str:
        return self.status_for(self.orders.all())

    @classmethod
    def status_for(cls, orders: Iterable[PaymentOrder]) -> PaymentEvent.Status:
        statuses = {order.status for order in orders}
        return cls.status_of(
            all_final=statuses <= FINAL_STATUSES,
            all_captured=statuses <= CAPTURED_STATUSES,
            all_failed=statuses == {OrderStatus.FAILED},
        )

    @classmethod
    def status_of(cls, *, all_final: bool, all_captured: bool, all_failed: bool) -> PaymentEvent.Status:
        """The one rule for a payment's status, from what its orders have in common (the metrics compute the same
        facts in SQL, payments/selectors.py)."""
        if not all_final:
            return cls.Status.IN_PROGRESS
        if all_captured:
            return cls.Status.SUCCEEDED
        if all_failed:
            return cls.Status.FAILED
        return cls.Status.PARTIALLY_SUCCEEDED


class PaymentOrder(ConcurrentTransitions, models.Model):
    """The money owed to one seller within a payment, executed at the PSP on its own (the seeds' payment_order).

    ``status`` changes only through the transitions below. The field is protected (assignment raises) and
    ConcurrentTransitionMixin saves with ``WHERE status = <the status we read>``, so two workers cannot both move
    the same order out of the same state.
    """

    payment_order_id = models.CharField(max_length=64, unique=True)
    event = models.ForeignKey(PaymentEvent, on_delete=models.PROTECT, related_name="orders")
    # The order's place in the request that created it: rows are inserted in payment_order_id order (a fixed lock
    # order, so that two requests naming the same ids cannot deadlock), and read back in this one.
    position = models.PositiveSmallIntegerField()
    seller = models.ForeignKey(
        Seller, on_delete=models.PROTECT, to_field="account", db_column="seller_account", related_name="+"
    )
    amount = MoneyField(max_digits=18, decimal_places=3)
    status = FSMField(
        default=OrderStatus.NOT_STARTED,
        choices=OrderStatus.choices,
        protected=True,
        db_index=True,
    )
    # The PSP's id for the charge (``pi_…``) and, for the hosted page, its session token (``cs_…``).
    psp_reference = models.CharField(max_length=255, blank=True, default="", db_default="")
    psp_token = models.CharField(max_length=255, blank=True, default="", db_default="")
    # While PENDING on the buyer (3-D Secure): the PSP's page where the buyer completes the step.
    action_url = models.CharField(max_length=2000, blank=True, default="", db_default="")
    failure_code = models.CharField(max_length=100, blank=True, default="", db_default="")
    failure_reason = models.TextField(blank=True, default="", db_default="")
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    # Set with SUCCESS: when the charge was captured, and the platform's fee on it (minor units) as it was then, so
    # that refunds and disputes split by the fee actually taken, whatever the fee settings say later.
    captured_at = models.DateTimeField(null=True, blank=True)
    platform_fee = models.BigIntegerField(null=True, blank=True)
    # When the seller's share moved from pending to available (delivery confirmed, or the hold period passed).
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    objects = models.Manager()

    # Set by payments.locks.order_lock: this instance was read under its row lock, in the open transaction.
    row_locked = False

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="payment_order_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(status__in=OrderStatus.values), name="payment_order_status_known"
            ),
        ]
        # Partial: an order has no PSP reference until it is executed, and creating an order is the hot path.
        indexes = [
            models.Index(
                fields=["psp_reference"], condition=~models.Q(psp_reference=""), name="order_psp_reference_idx"
            ),
            models.Index(fields=["psp_token"], condition=~models.Q(psp_token=""), name="order_psp_token_idx"),
            # What the hold-period release looks for: captured, not yet released, oldest first.
            models.Index(
                fields=["captured_at"],
                condition=models.Q(released_at__isnull=True, captured_at__isnull=False),
                name="order_unreleased_idx",
            ),
            # The metrics' window (payments and orders of the last METRICS_WINDOW_SECONDS, by status): a range scan
            # on this, however large the table grows. Written once per order; created_at never changes.
            models.Index(fields=["created_at"], name="order_created_idx"),
        ]
        permissions = [("release_funds", "Can release an order's funds to its seller")]

    def __str__(self) -> str:
        return self.payment_order_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The status and its log rows commit together: a transition is never saved without its history. In a
        # savepoint, so that a refused save (ConcurrentTransition: another worker moved the order first) leaves the
        # caller's transaction usable, to record the late event and carry on.
        # The log rows go first: PostgreSQL refuses a status UPDATE that no log row of this transaction explains.
        # Under the row lock (payments/locks.py) no other transaction can move the order, so the conditional UPDATE
        # is certain to match and the savepoint (two round trips on the executor's hot path) is not needed.
        pending: list[OrderTransition] = self.__dict__.pop("_pending_transitions", [])
        with transaction.atomic(savepoint=not self.row_locked):
            if pending:
                OrderTransition.objects.bulk_create(pending)
            super().save(*args, **kwargs)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    # --- Transitions: guards only, no I/O (STYLE.md "State machines"). Each takes the actor and a reason for the log.

    @transition(field=status, source=OrderStatus.NOT_STARTED, target=OrderStatus.EXECUTING)
    def start_execution(self, *, actor: str, reason: str = "") -> None:
        """Committed before the PSP call, so a crash after it is visible to the recovery sweep."""

    @transition(field=status, source=OrderStatus.EXECUTING, target=OrderStatus.UNKNOWN)
    def mark_unknown(self, *, actor: str, reason: str = "") -> None:
        """The request left and no answer came back."""

    @transition(field=status, source=[OrderStatus.EXECUTING, OrderStatus.UNKNOWN], target=OrderStatus.PENDING)
    def mark_pending(self, *, actor: str, reason: str = "") -> None:
        """The PSP accepted the charge and finishes it later. From UNKNOWN too: a lookup may find it still working."""

    @transition(
        field=status,
        source=[OrderStatus.EXECUTING, OrderStatus.PENDING, OrderStatus.UNKNOWN],
        target=OrderStatus.SUCCESS,
    )
    def mark_success(self, *, actor: str, reason: str = "") -> None:
        pass

    @transition(
        field=status,
        source=[OrderStatus.NOT_STARTED, OrderStatus.EXECUTING, OrderStatus.PENDING, OrderStatus.UNKNOWN],
        target=OrderStatus.FAILED,
    )
    def mark_failed(self, *, actor: str, reason: str = "", failure_code: str = "") -> None:
        """From NOT_STARTED too: the risk check refuses an order before it is ever sent (DESIGN.md "Pay-in")."""
        self.failure_code = failure_code
        self.failure_reason = reason

    @transition(
        field=status,
        source=[OrderStatus.SUCCESS, OrderStatus.PARTIALLY_REFUNDED],
        target=OrderStatus.PARTIALLY_REFUNDED,
    )
    def refund_partially(self, *, actor: str, reason: str = "") -> None:
        pass

    @transition(field=status, source=[OrderStatus.SUCCESS, OrderStatus.PARTIALLY_REFUNDED], target=OrderStatus.REFUNDED)
    def refund_fully(self, *, actor: str, reason: str = "") -> None:
        pass

    # A refund booked when it was sent failed at the PSP afterwards: the money stayed with us, and so does the sale.
    @transition(field=status, source=[OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED], target=OrderStatus.SUCCESS)
    def refund_revert_to_success(self, *, actor: str, reason: str = "") -> None:
        """No other refund of the order stands."""

    @transition(field=status, source=OrderStatus.REFUNDED, target=OrderStatus.PARTIALLY_REFUNDED)
    def refund_revert_to_partial(self, *, actor: str, reason: str = "") -> None:
        """Other refunds of the order still stand."""


class OrderTransition(models.Model):
    """Append-only history of an order's status. Written by PaymentOrder.save for every transition it carries;
    PostgreSQL refuses UPDATE and DELETE on it (migration 0002)."""

    order = models.ForeignKey(PaymentOrder, on_delete=models.PROTECT, related_name="transitions")
    from_status = models.CharField(max_length=32, choices=OrderStatus.choices)
    to_status = models.CharField(max_length=32, choices=OrderStatus.choices)
    transition = models.CharField(max_length=64)
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=100)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["order", "created_at"], name="order_transition_order_idx")]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status} → {self.to_status}"


class WebhookEvent(models.Model):
    """The webhook inbox: every PSP event as it arrived, stored before it is acted on (DESIGN.md "Exactly once").

    The PSP's event id is unique, so a redelivered event is recognised and counted, never applied twice. The raw
    body is kept as received, for the finance console and for reprocessing after a handler is fixed.
    """

    psp = models.CharField(max_length=32)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    # The id of the object the event is about (pi_…, cs_…), for finding a payment's events.
    object_id = models.CharField(max_length=255, blank=True, default="")
    payload = models.TextField()
    received_at = models.DateTimeField(db_default=Now())
    deliveries = models.PositiveIntegerField(default=1, db_default=1)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    # After a failed attempt: not before this time (exponential backoff). Empty: due now.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, default="", db_default="")
    last_error = models.TextField(blank=True, default="", db_default="")

    class Meta:
        # The event id first: the console finds an event by it, and so does a replay, neither naming the PSP.
        constraints = [models.UniqueConstraint(fields=["event_id", "psp"], name="webhook_event_unique")]
        indexes = [
            models.Index(fields=["object_id"], name="webhook_event_object_idx"),
            # The waiting ones, in arrival order: what a drain claims next, and what the console lists.
            models.Index(fields=["id"], condition=models.Q(processed_at__isnull=True), name="webhook_event_open_idx"),
            # The console's filters by PSP and by type: their choices are read from these, value by value.
            models.Index(fields=["psp"], name="webhook_event_psp_idx"),
            models.Index(fields=["type"], name="webhook_event_type_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.psp} {self.event_id} {self.type}"


class DeadLetter(models.Model):
    """Work that failed every attempt it was allowed (DESIGN.md "Failures"). The object it was for stays where it
    stopped, visibly: an order left EXECUTING or UNKNOWN is never quietly failed. A person replays it (or the
    recovery sweep's lookup settles the order) and the letter is closed with what was done."""

    task = models.CharField(max_length=100)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=255)
    attempts = models.PositiveIntegerField()
    last_error = models.TextField()
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True, default="", db_default="")

    class Meta:
        constraints = [
            # At most one open letter per piece of work: a second failure updates it instead of adding another.
            models.UniqueConstraint(
                fields=["task", "object_id"],
                condition=models.Q(resolved_at__isnull=True),
                name="dead_letter_open_unique",
            ),
        ]
        indexes = [models.Index(fields=["-last_failed_at"], name="dead_letter_recent_idx")]
        permissions = [("replay_deadletter", "Can replay a dead letter")]

    def __str__(self) -> str:
        return f"{self.task} {self.object_id} ({self.attempts} attempts)"
