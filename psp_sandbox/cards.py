"""The sandbox's test payment methods: Stripe's own test ids, so the same code and tests run against real Stripe in
test mode, plus one of ours.

- ``pm_card_visa``: succeeds at once (charge ``succeeded``, balance transaction with the fee).
- ``pm_card_chargeDeclined``: 402 ``card_declined`` / ``generic_decline``; the intent goes back to
  ``requires_payment_method`` with ``last_payment_error``.
- ``pm_card_chargeDeclinedInsufficientFunds``: the same with ``decline_code`` ``insufficient_funds``.
- ``pm_card_authenticationRequired``: ``requires_action`` (3-D Secure); it finishes on the authentication page.
- ``pm_card_refundFail``: succeeds; a refund of it starts ``succeeded`` and fails a moment later
  (``SANDBOX_PROCESSING_DELAY_SECONDS``): ``refund.updated`` and ``refund.failed``, as with Stripe's own.
- ``pm_card_processing``: **the sandbox's own**, Stripe has no such card. The intent stays ``processing`` with a
  ``pending`` charge until it is settled; this is how we exercise "Handling payment processing delays".

Card numbers for the hosted page map onto the same behaviours (``CARD_NUMBERS``); any other Luhn-valid number
succeeds like ``pm_card_visa``. A number is only ever read to choose the payment method and to keep its brand and
last four digits (``typed_card``); it is never stored, logged or shown again.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from api.carddata import luhn_valid


class Behaviour(enum.Enum):
    SUCCEED = "succeed"
    DECLINE = "decline"
    REQUIRE_ACTION = "require_action"
    PROCESS = "process"


@dataclass(frozen=True)
class SandboxCard:
    behaviour: Behaviour
    brand: str = "visa"
    last4: str = "4242"
    decline_code: str | None = None
    message: str | None = None
    refund_fails: bool = False


_DECLINED = "Your card was declined."

PAYMENT_METHODS: dict[str, SandboxCard] = {
    "pm_card_visa": SandboxCard(Behaviour.SUCCEED),
    "pm_card_chargeDeclined": SandboxCard(
        Behaviour.DECLINE, last4="0002", decline_code="generic_decline", message=_DECLINED
    ),
    "pm_card_chargeDeclinedInsufficientFunds": SandboxCard(
        Behaviour.DECLINE, last4="9995", decline_code="insufficient_funds", message="Your card has insufficient funds."
    ),
    "pm_card_authenticationRequired": SandboxCard(Behaviour.REQUIRE_ACTION, last4="3184"),
    "pm_card_processing": SandboxCard(Behaviour.PROCESS, last4="0077"),
    "pm_card_refundFail": SandboxCard(Behaviour.SUCCEED, last4="5126", refund_fails=True),
}

# For the hosted page's card form: Stripe's test numbers, mapped to the payment methods above.
CARD_NUMBERS: dict[str, str] = {
    "4242424242424242": "pm_card_visa",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
    "4000002760003184": "pm_card_authenticationRequired",
    "4000000000005126": "pm_card_refundFail",
}


def card_for(payment_method: str) -> SandboxCard | None:
    return PAYMENT_METHODS.get(payment_method)


@dataclass(frozen=True)
class TypedCard:
    """What the sandbox keeps of a card number typed on the hosted page."""

    payment_method: str
    brand: str
    last4: str


def typed_card(raw: str) -> TypedCard | None:
    """The test payment method a typed card number stands for, or None when it is not a card number (12 to 19
    digits, spaces and dashes allowed, Luhn-valid)."""
    digits = re.sub(r"[ -]", "", raw)
    if not re.fullmatch(r"[0-9]{12,19}", digits) or not luhn_valid(digits):
        return None
    return TypedCard(CARD_NUMBERS.get(digits, "pm_card_visa"), brand_of(digits), digits[-4:])


def brand_of(digits: str) -> str:
    """The card network by the number's leading digits (IIN ranges), in Stripe's brand names."""
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in {"34", "37"}:
        return "amex"
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    if digits.startswith(("6011", "65")):
        return "discover"
    return "unknown"
