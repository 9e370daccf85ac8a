"""What the executor needs from a PSP, whichever PSP it is (DESIGN.md "Pay-in"; the seeds' "PSP integration"), and
what refunds, payouts and disputes need from it.

Every outcome falls in one of three classes, because each asks for a different reaction (DESIGN.md "Failures"):
a result (the charge succeeded, failed for good, or is still in progress at the PSP); a transient error (nothing
happened, or it is safe to ask again with the same idempotency key: retry with backoff); and an unknown outcome (the
request left and no answer came: the charge may have happened; settle it by retrying with the same key or by a
lookup, never by charging again under another key).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class ChargeStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # permanent: a decline or an invalid request; retrying cannot help
    PENDING = "pending"  # the PSP is still working (3-D Secure, asynchronous methods); a webhook or lookup ends it


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    psp_reference: str = ""
    failure_code: str = ""  # the decline code when the PSP gives one (insufficient_funds), else its error code
    failure_message: str = ""
    # PENDING on the buyer (3-D Secure): where the buyer completes the step; empty otherwise.
    action_url: str = ""


class TransientPspError(Exception):
    """Nothing was charged, or asking again with the same idempotency key is safe: 429, 5xx, connection refused."""


class UnknownPspOutcome(Exception):
    """The request may have reached the PSP and been applied; we did not hear. Never charge under a new key."""


class PspConfigurationError(Exception):
    """Our side is wrong (bad API key, missing permission): no retry helps, a person must act."""


class InvalidWebhook(Exception):
    """A webhook we cannot trust or read: bad or missing signature, stale timestamp, not an event."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VerifiedEvent:
    """A webhook whose signature checked out, with what the inbox indexes it by."""

    event_id: str
    type: str
    object_id: str


class RefundStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # the PSP accepted it and finishes later
    FAILED = "failed"  # permanent: the PSP refused it (charge disputed, amount too large, ...) or it failed later


@dataclass(frozen=True)
class RefundResult:
    status: RefundStatus
    psp_reference: str = ""  # re_…
    failure_code: str = ""
    failure_message: str = ""


class TransferStatus(enum.StrEnum):
    PAID = "paid"
    FAILED = "failed"  # permanent: unknown destination account, balance insufficient, invalid request


@dataclass(frozen=True)
class TransferResult:
    status: TransferStatus
    psp_reference: str = ""  # tr_…
    failure_code: str = ""
    failure_message: str = ""


class DisputeStatus(enum.StrEnum):
    OPEN = "open"  # funds withdrawn, outcome pending (Stripe: warning_needs_response, needs_response, under_review…)
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True)
class DisputeNotice:
    dispute_id: str  # dp_…
    payment_intent: str  # pi_… of the disputed charge
    amount: int  # minor units disputed
    currency: str  # upper case, e.g. "EUR"
    fee: int  # the PSP's dispute fee withdrawn, minor units (sum over its withdrawal balance transactions; 0 if none)
    status: DisputeStatus
    reason: str = ""


@dataclass(frozen=True)
class PspNotice:
    """What a PSP event says about our orders, refunds and disputes, in our terms. All of ``result``,
    ``refund_result`` and ``dispute`` are None for an event that changes nothing of ours (a failed attempt the buyer
    may still retry on the hosted page, a refund someone else made, a transfer, a type we do not use)."""

    result: ChargeResult | None = None
    payment_order_id: str = ""  # a charge made by the executor: the order it was for
    checkout_token: str = ""  # a hosted-page payment: the session token, stored on every order of the payment
    note: str = ""  # why nothing applies, for the inbox's outcome
    refund_id: str = ""  # our refund id, from the refund's metadata["refund_id"]
    refund_result: RefundResult | None = None
    dispute: DisputeNotice | None = None


@dataclass(frozen=True)
class HostedCheckout:
    token: str  # the PSP's session id (cs_…), stored on the orders
    url: str  # where the buyer pays


@dataclass(frozen=True)
class CheckoutItem:
    name: str
    amount: int  # minor units
    quantity: int = 1


class PaymentGateway(Protocol):
    def charge(
        self, *, payment_order_id: str, amount: int, currency: str, payment_method: str, description: str = ""
    ) -> ChargeResult:
        """Charge ``amount`` minor units once per ``payment_order_id``, which is the PSP's idempotency key."""
        ...

    def lookup(self, *, payment_order_id: str) -> ChargeResult | None:
        """What the PSP knows of the charge for this order, or None when it has never seen it."""
        ...

    def checkout_create(
        self,
        *,
        nonce: str,
        currency: str,
        items: list[CheckoutItem],
        success_url: str,
        cancel_url: str,
        metadata: dict[str, str],
        customer_email: str = "",
    ) -> HostedCheckout:
        """Register a hosted payment page once per ``nonce`` (the PSP's idempotency key)."""
        ...

    def checkout_lookup(self, *, token: str) -> ChargeResult | None:
        """What became of a hosted page: paid, expired, or None while the buyer may still pay."""
        ...

    def checkout_expire(self, *, token: str) -> None:
        """Close a hosted page the buyer abandoned; the PSP's expiry event then fails its orders."""
        ...

    def ping(self, *, timeout: float) -> None:
        """Raise unless the PSP's API answers within ``timeout`` seconds with anything but a server error (the
        readiness check, ops/health.py). Charges nothing and sends no secret."""
        ...

    def webhook_verify(self, *, payload: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        """Check the signature of a webhook; raise InvalidWebhook when it does not hold."""
        ...

    def webhook_notice(self, *, payload: str) -> PspNotice:
        """Read a stored, verified event into what it means for our orders, refunds and disputes."""
        ...

    def refund(
        self, *, refund_id: str, payment_intent: str, amount: int, currency: str, payment_order_id: str
    ) -> RefundResult:
        """Refund ``amount`` minor units of the charge of ``payment_intent`` once per ``refund_id``, which is the PSP's
        idempotency key. A refusal (disputed charge, more than is left) is a FAILED result, never an exception."""
        ...

    def refund_lookup(self, *, refund_id: str, payment_intent: str) -> RefundResult | None:
        """What the PSP knows of our refund ``refund_id`` of ``payment_intent``, or None when it has never seen it."""
        ...

    def transfer(
        self, *, payout_id: str, destination: str, amount: int, currency: str, description: str = ""
    ) -> TransferResult:
        """Move ``amount`` minor units to the connected account ``destination`` once per ``payout_id``, which is the
        PSP's idempotency key. A refusal (unknown account, balance short) is a FAILED result, never an exception."""
        ...

    def transfer_lookup(self, *, payout_id: str) -> TransferResult | None:
        """What the PSP knows of the transfer for ``payout_id``, or None when it has never seen it."""
        ...
