"""The sandbox's test payment methods: Stripe's own test ids, so the same code and tests run against real Stripe in
test mode, plus one of ours.

- ``pm_card_visa``: succeeds at once (charge ``succeeded``, balance transaction with the fee).
- ``pm_card_chargeDeclined``: 402 ``card_declined`` / ``generic_decline``; the intent goes back to
  ``requires_payment_method`` with ``last_payment_error``.
- ``pm_card_chargeDeclinedInsufficientFunds``: the same with ``decline_code`` ``insufficient_funds``.
- ``pm_card_authenticationRequired``: ``requires_action`` (3-D Secure); it finishes later, by a settle call.
- ``pm_card_processing``: **the sandbox's own**, Stripe has no such card. The intent stays ``processing`` with a
  ``pending`` charge until it is settled; this is how we exercise "Handling payment processing delays".

Card numbers for the hosted page map onto the same behaviours (``CARD_NUMBERS``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
}

# For the hosted page's card form (not built yet): Stripe's test numbers, mapped to the payment methods above.
CARD_NUMBERS: dict[str, str] = {
    "4242424242424242": "pm_card_visa",
    "4000000000000002": "pm_card_chargeDeclined",
    "4000000000009995": "pm_card_chargeDeclinedInsufficientFunds",
    "4000002760003184": "pm_card_authenticationRequired",
}


def card_for(payment_method: str) -> SandboxCard | None:
    return PAYMENT_METHODS.get(payment_method)
