"""The risk check every order passes before it is sent to the PSP (the seeds: "only processes payments that pass the
risk check"). The executor asks ``order_risk_check``; the provider behind it is RISK_PROVIDER: the built-in rules
(payments/risk/rules.py: sanctions screening, velocity, amount limits, country rules) or an external provider over
HTTP (payments/risk/external.py). A rejection fails the order with ``risk_rejected`` and the rule that fired; a
review holds it, never sent, until a finance person decides (payments/risk/reviews.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, cast

from django.conf import settings
from djmoney.money import Money

from audit.models import SecurityEvent
from audit.services import security_event_record
from payments.models import PaymentOrder


class Verdict(enum.StrEnum):
    APPROVE = "approve"
    REJECT = "reject"  # the order fails with risk_rejected and is never sent
    REVIEW = "review"  # the order waits for a finance person's decision


@dataclass(frozen=True)
class RiskDecision:
    verdict: Verdict
    rule: str = ""  # the rule that fired, for the order's failure reason and the finance console


APPROVED = RiskDecision(Verdict.APPROVE)


@dataclass(frozen=True)
class RiskSubject:
    """What the risk check sees of an order: never card data (the API refuses it), only the PSP's token."""

    payment_id: str
    payment_order_id: str
    amount: Decimal  # major units
    currency: str
    seller_account: str
    seller_name: str
    buyer_id: str
    buyer_name: str
    buyer_email: str
    buyer_country: str
    buyer_ip: str | None
    payment_method_token: str


class RiskProvider(Protocol):
    def assess(self, subject: RiskSubject) -> RiskDecision: ...


def subject_of(order: PaymentOrder) -> RiskSubject:
    money = cast(Money, order.amount)
    event = order.event
    return RiskSubject(
        payment_id=event.payment_id,
        payment_order_id=order.payment_order_id,
        amount=money.amount,
        currency=money.currency.code,
        seller_account=order.seller_id,
        seller_name=order.seller.display_name,
        buyer_id=event.buyer_id,
        buyer_name=event.buyer_name,
        buyer_email=event.buyer_email,
        buyer_country=event.buyer_country,
        buyer_ip=event.buyer_ip,
        payment_method_token=event.payment_method_token,
    )


def risk_provider() -> RiskProvider:
    if settings.RISK_PROVIDER == "http":
        from payments.risk.external import HttpRiskProvider

        return HttpRiskProvider()
    from payments.risk.rules import RulesRiskProvider

    return RulesRiskProvider()


def order_risk_check(order: PaymentOrder) -> RiskDecision:
    return risk_provider().assess(subject_of(order))


def risk_rejection_record(order: PaymentOrder, rule: str, *, actor: str) -> None:
    """A rejection is a security event too: the console's list of them is where a card-testing wave shows."""
    security_event_record(
        kind=SecurityEvent.Kind.RISK_REJECTED,
        actor=f"buyer {order.event.buyer_id}" if order.event.buyer_id else actor,
        ip=order.event.buyer_ip or None,
        detail=f"{order.payment_order_id}: {rule} ({actor})",
    )
