"""The risk check every order passes before it is sent to the PSP (the seeds: "only processes payments that pass the
risk check"). The executor asks ``order_risk_check``; the rules themselves (sanctions, velocity, limits) and an
external provider plug in behind it. Until then every order is approved, and the executor already honours the other
verdicts, so adding a provider changes no caller.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


def order_risk_check(order: PaymentOrder) -> RiskDecision:
    return APPROVED
