"""What the executor needs from a PSP, whichever PSP it is (DESIGN.md "Pay-in"; the seeds' "PSP integration").

Every outcome falls in one of three classes, because each asks for a different reaction (DESIGN.md "Failures"):
a result (the charge succeeded, failed for good, or is still in progress at the PSP); a transient error (nothing
happened, or it is safe to ask again with the same idempotency key: retry with backoff); and an unknown outcome (the
request left and no answer came: the charge may have happened; settle it by retrying with the same key or by a
lookup, never by charging again under another key).
"""

from __future__ import annotations

import enum
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


class TransientPspError(Exception):
    """Nothing was charged, or asking again with the same idempotency key is safe: 429, 5xx, connection refused."""


class UnknownPspOutcome(Exception):
    """The request may have reached the PSP and been applied; we did not hear. Never charge under a new key."""


class PspConfigurationError(Exception):
    """Our side is wrong (bad API key, missing permission): no retry helps, a person must act."""


class PaymentGateway(Protocol):
    def charge(
        self, *, payment_order_id: str, amount: int, currency: str, payment_method: str, description: str = ""
    ) -> ChargeResult:
        """Charge ``amount`` minor units once per ``payment_order_id``, which is the PSP's idempotency key."""
        ...

    def lookup(self, *, payment_order_id: str) -> ChargeResult | None:
        """What the PSP knows of the charge for this order, or None when it has never seen it."""
        ...
