"""The sandbox PSP's own state: what "Stripe" knows. The other apps never touch these tables; they only talk to the
sandbox over HTTP, as they would to Stripe. Ids are Stripe's (``pi_…``, ``ch_…``, ``txn_…``) and are the primary keys.
Amounts are integers in minor units, currencies lower-case, as in Stripe's API.
"""

from __future__ import annotations

import secrets
import string

from django.contrib.postgres.indexes import GinIndex
from django.db import models

_ALPHABET = string.ascii_letters + string.digits


# Random bytes below this map evenly onto the alphabet (4 x 62 = 248); the few above are drawn again.
_UNBIASED = 256 - 256 % len(_ALPHABET)


def stripe_id(prefix: str, length: int = 24) -> str:
    """A Stripe-style id: the object's prefix, an underscore and ``length`` random alphanumerics (uniform, from
    ``secrets``: one read of random bytes rather than a draw per character)."""
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(_ALPHABET[byte % len(_ALPHABET)] for byte in secrets.token_bytes(length + 8) if byte < _UNBIASED)
    return f"{prefix}_{''.join(chars[:length])}"


class PaymentIntent(models.Model):
    class Status(models.TextChoices):
        REQUIRES_PAYMENT_METHOD = "requires_payment_method"
        REQUIRES_CONFIRMATION = "requires_confirmation"
        REQUIRES_ACTION = "requires_action"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        CANCELED = "canceled"

    id = models.CharField(primary_key=True, max_length=40)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=Status.choices)
    payment_method = models.CharField(max_length=255, blank=True)
    payment_method_types = models.JSONField(default=list)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict)
    # Copied out of metadata so that "which intents and charges belong to this order" is an indexed lookup.
    payment_order_id = models.CharField(max_length=255, blank=True, db_index=True)
    client_secret = models.CharField(max_length=100)
    return_url = models.TextField(blank=True)
    last_payment_error = models.JSONField(null=True, blank=True)
    next_action = models.JSONField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.CharField(max_length=32, blank=True)
    # The card a buyer typed on the hosted page, as far as it may be kept: brand and last four digits (never the
    # number). Empty for the API's test payment methods, whose card is known by their id (psp_sandbox/cards.py).
    card_brand = models.CharField(max_length=16, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    created = models.DateTimeField()
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="psp_sandbox_pi_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["created"], name="psp_sandbox_pi_created"),
            # Search by metadata is a jsonb containment (metadata @> '{"key": "value"}'), which a GIN index serves.
            GinIndex(fields=["metadata"], name="psp_sandbox_pi_metadata"),
            # The clock's scan for processing payments that are due to clear.
            models.Index(fields=["updated"], name="psp_sandbox_pi_processing", condition=models.Q(status="processing")),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} {self.status}"


class BalanceTransaction(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        AVAILABLE = "available"

    id = models.CharField(primary_key=True, max_length=40)
    type = models.CharField(max_length=32, default="charge")
    reporting_category = models.CharField(max_length=32, default="charge")
    amount = models.BigIntegerField()
    fee = models.BigIntegerField()
    net = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    available_on = models.DateTimeField()
    source = models.CharField(max_length=40)
    description = models.TextField(blank=True)
    created = models.DateTimeField()

    class Meta:
        constraints = [
            # The parts always add up to the whole (STYLE.md "Money"): the settlement report will rely on it.
            models.CheckConstraint(
                condition=models.Q(net=models.F("amount") - models.F("fee")), name="psp_sandbox_txn_net"
            ),
        ]
        indexes = [
            models.Index(fields=["available_on", "created", "id"], name="psp_sandbox_txn_available_on"),
            models.Index(fields=["-created", "-id"], name="psp_sandbox_txn_created"),
            models.Index(fields=["source"], name="psp_sandbox_txn_source"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} fee {self.fee}"


class Charge(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    # The charges that move (or are moving) the buyer's money: what "PSP charges per order ≤ 1" counts.
    MONEY_MOVING = (Status.PENDING, Status.SUCCEEDED)

    id = models.CharField(primary_key=True, max_length=40)
    payment_intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="charges")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    payment_method = models.CharField(max_length=255)
    balance_transaction = models.OneToOneField(
        BalanceTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="charge"
    )
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.TextField(blank=True)
    card_brand = models.CharField(max_length=16, default="visa")
    card_last4 = models.CharField(max_length=4, default="4242")
    card_country = models.CharField(max_length=2, default="US")
    # Refunded so far (succeeded and pending refunds; a failed refund gives its amount back).
    amount_refunded = models.BigIntegerField(default=0)
    disputed = models.BooleanField(default=False)
    outcome = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict)
    # Deliberately not unique: if a caller charges one order twice (say, with two idempotency keys), the sandbox must
    # let it happen, like Stripe would, so that the chaos test can see and count the double charge.
    payment_order_id = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_refunded__gte=0, amount_refunded__lte=models.F("amount")),
                name="psp_sandbox_ch_refunded_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["payment_order_id", "status"], name="psp_sandbox_ch_order_status")]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} {self.status}"


class IdempotencyKey(models.Model):
    """The first response to an ``Idempotency-Key``, replayed to every retry of the same request for 24 hours.

    Written in the same transaction as the objects the request created, so a stored response and the charge it
    describes commit together or not at all.
    """

    # A digest of the API key, not the key: keys are scoped per API key as at Stripe, and no secret sits in a table.
    api_key_digest = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    request_method = models.CharField(max_length=8)
    request_path = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key_digest", "key"], name="psp_sandbox_idempotency_key_unique"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="psp_sandbox_idem_expires")]

    def __str__(self) -> str:
        return f"{self.key} → {self.response_status}"


class SandboxConfig(models.Model):
    """The sandbox's runtime configuration: one row, so that every gunicorn worker of the sandbox sees the same webhook
    URL and faults. It holds only overrides: a knob missing here keeps its environment default (psp_sandbox/knobs.py).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    overrides = models.JSONField(default=dict)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="psp_sandbox_config_one_row")]

    def __str__(self) -> str:
        return f"sandbox config {self.overrides}"


class Event(models.Model):
    """A Stripe event: what happened, with a snapshot of the object as it was at that moment. Written in the same
    transaction as the change it reports, so an event exists exactly when its change committed."""

    id = models.CharField(primary_key=True, max_length=40)
    type = models.CharField(max_length=64)
    api_version = models.CharField(max_length=32)
    # {"object": {...}} and, for updates, "previous_attributes": Stripe's ``data``.
    data = models.JSONField()
    request_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True)
    # What the fault decisions for this event's deliveries hash (psp_sandbox/faults.py): stable across runs when the
    # request that caused it carried an idempotency key.
    fault_identity = models.TextField()
    # PostgreSQL's id of the transaction that wrote the event: events of one change (an intent's success and the
    # Checkout Session it completes) are delivered one after the other, in order (psp_sandbox/webhooks.py).
    transaction_id = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["-created", "-id"], name="psp_sandbox_evt_created"),
            models.Index(fields=["type", "-created"], name="psp_sandbox_evt_type"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"


class WebhookDelivery(models.Model):
    """One event on its way to one endpoint: the delivery loop's queue (psp_sandbox/webhooks.py) and its record."""

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its next attempt (or being attempted under a lease)
        DELIVERED = "delivered"  # the endpoint answered 2xx
        FAILED = "failed"  # every attempt failed; given up
        DROPPED = "dropped"  # the drop fault: never sent

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="deliveries")
    endpoint_url = models.TextField()
    # The payment (or other object) the event is about: a delivery does not overtake the first attempt of an earlier
    # one with the same key (psp_sandbox/webhooks.py), so one payment's events arrive in the order they happened.
    ordering_key = models.CharField(max_length=80, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Faults decided when the delivery was scheduled: held back until a later delivery to the same endpoint was
    # attempted (reorder), and sent twice (duplicate).
    reordered = models.BooleanField(default=False)
    duplicate = models.BooleanField(default=False)
    created = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint_url"], name="psp_sandbox_dlv_one_per_endpoint"),
        ]
        indexes = [
            # The delivery loop's claim: due pending rows in creation order.
            models.Index(
                fields=["next_attempt_at", "id"],
                name="psp_sandbox_dlv_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["event"], name="psp_sandbox_dlv_event"),
            models.Index(
                fields=["ordering_key", "id"],
                name="psp_sandbox_dlv_ordering",
                condition=models.Q(status="pending", attempts=0),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_url} {self.status}"


class CheckoutSession(models.Model):
    """A Checkout Session in ``payment`` mode: line items in one currency, paid on the hosted page
    (``/c/pay/{id}``) through one PaymentIntent, created at the buyer's first attempt and reused after a decline."""

    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETE = "complete"
        EXPIRED = "expired"

    class PaymentStatus(models.TextChoices):
        UNPAID = "unpaid"
        PAID = "paid"

    id = models.CharField(primary_key=True, max_length=80)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    payment_status = models.CharField(max_length=16, choices=PaymentStatus.choices, default=PaymentStatus.UNPAID)
    currency = models.CharField(max_length=3)
    amount_subtotal = models.BigIntegerField()
    amount_total = models.BigIntegerField()
    # [{"id", "name", "unit_amount", "quantity", "amount"}]: what the page lists and the API's line items.
    line_items = models.JSONField()
    url = models.TextField()
    success_url = models.TextField()
    cancel_url = models.TextField(blank=True)
    client_reference_id = models.CharField(max_length=200, blank=True)
    customer_email = models.CharField(max_length=512, blank=True)
    # What the buyer gave on the page: {"email", "name"}.
    customer_details = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict)
    payment_intent_metadata = models.JSONField(default=dict)
    payment_intent_description = models.TextField(blank=True)
    payment_intent = models.OneToOneField(
        PaymentIntent, on_delete=models.PROTECT, null=True, blank=True, related_name="checkout_session"
    )
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_total=models.F("amount_subtotal")), name="psp_sandbox_cs_no_discounts"
            ),
        ]
        indexes = [
            models.Index(fields=["-created", "-id"], name="psp_sandbox_cs_created"),
            # The clock's scan for open sessions past their expiry.
            models.Index(fields=["expires_at"], name="psp_sandbox_cs_open", condition=models.Q(status="open")),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount_total} {self.currency} {self.status}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    id = models.CharField(primary_key=True, max_length=40)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds")
    payment_intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=32, blank=True)
    metadata = models.JSONField(default=dict)
    balance_transaction = models.OneToOneField(
        BalanceTransaction, on_delete=models.PROTECT, related_name="refund", null=True, blank=True
    )
    failure_balance_transaction = models.OneToOneField(
        BalanceTransaction, on_delete=models.PROTECT, related_name="failed_refund", null=True, blank=True
    )
    failure_reason = models.CharField(max_length=64, blank=True)
    # A refund of a ``pm_card_refundFail`` charge fails by itself at this moment (psp_sandbox/clock.py).
    fails_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="psp_sandbox_re_amount_positive")]
        indexes = [
            models.Index(fields=["-created", "-id"], name="psp_sandbox_re_created"),
            models.Index(fields=["fails_at"], name="psp_sandbox_re_fails", condition=models.Q(status="succeeded")),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} {self.status}"


class Transfer(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    amount = models.BigIntegerField()
    amount_reversed = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    destination = models.CharField(max_length=255)
    destination_payment = models.CharField(max_length=40)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict)
    transfer_group = models.CharField(max_length=255, blank=True)
    balance_transaction = models.OneToOneField(BalanceTransaction, on_delete=models.PROTECT, related_name="transfer")
    created = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0, amount_reversed__gte=0, amount_reversed__lte=models.F("amount")),
                name="psp_sandbox_tr_amounts",
            ),
        ]
        indexes = [models.Index(fields=["-created", "-id"], name="psp_sandbox_tr_created")]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} → {self.destination}"


class TransferReversal(models.Model):
    id = models.CharField(primary_key=True, max_length=40)
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, related_name="reversals")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    metadata = models.JSONField(default=dict)
    balance_transaction = models.OneToOneField(
        BalanceTransaction, on_delete=models.PROTECT, related_name="transfer_reversal"
    )
    created = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="psp_sandbox_trr_amount_positive")]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency}"


class Dispute(models.Model):
    class Status(models.TextChoices):
        NEEDS_RESPONSE = "needs_response"
        WON = "won"
        LOST = "lost"

    id = models.CharField(primary_key=True, max_length=40)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="disputes")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEEDS_RESPONSE)
    reason = models.CharField(max_length=32)
    # The money taken from the balance when the dispute opened, and given back when it was won.
    withdrawal = models.OneToOneField(BalanceTransaction, on_delete=models.PROTECT, related_name="dispute")
    reinstatement = models.OneToOneField(
        BalanceTransaction, on_delete=models.PROTECT, related_name="won_dispute", null=True, blank=True
    )
    created = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="psp_sandbox_dp_amount_positive")]
        indexes = [models.Index(fields=["-created", "-id"], name="psp_sandbox_dp_created")]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} {self.status}"


class File(models.Model):
    """A generated file: a report's CSV. Its contents are not stored but streamed from the balance transactions each
    time they are downloaded; ``parameters`` pins everything they depend on (the interval, the columns, the moment of
    the run and the report faults then configured), so every download is the same bytes."""

    id = models.CharField(primary_key=True, max_length=40)
    purpose = models.CharField(max_length=32, default="finance_report_run")
    filename = models.CharField(max_length=100)
    title = models.CharField(max_length=200)
    size = models.BigIntegerField()
    parameters = models.JSONField()
    created = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.id} {self.filename}"


class ReportRun(models.Model):
    """A run of a Reporting API report type; it succeeds at once, its result a ``File``."""

    id = models.CharField(primary_key=True, max_length=40)
    report_type = models.CharField(max_length=64)
    parameters = models.JSONField()
    status = models.CharField(max_length=16, default="succeeded")
    result = models.OneToOneField(File, on_delete=models.PROTECT, related_name="report_run")
    # What the report faults changed in the file (psp_sandbox/reports.py), so that a test knows what to expect.
    alterations = models.JSONField(default=list)
    created = models.DateTimeField()
    succeeded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.id} {self.report_type}"


class FaultAttempt(models.Model):
    """How many times each API call identity has been seen: the attempt number of the fault decisions
    (psp_sandbox/faults.py), shared by every worker so that a retry's decision does not depend on which served it."""

    identity = models.CharField(primary_key=True, max_length=64)  # sha256 of the call's identity
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.identity[:12]}… seen {self.count} times"
