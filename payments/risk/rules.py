"""The built-in risk rules, first decisive one wins, rejections before reviews:

1. sanctions: the buyer's or the seller's name exactly on the list → reject; close to an entry (fuzzy score at
   least RISK_SANCTIONS_FUZZY_THRESHOLD) → review;
2. countries: the buyer's country in RISK_BLOCKED_COUNTRIES → reject, in RISK_REVIEW_COUNTRIES → review;
3. amounts: an order above RISK_REJECT_AMOUNTS for its currency → reject, above RISK_REVIEW_AMOUNTS → review;
4. velocity: more than RISK_VELOCITY_LIMIT payments per buyer, payment method or IP within the window → reject
   (the card-testing pattern).
"""

from __future__ import annotations

from django.conf import settings

from payments.risk import APPROVED, RiskDecision, RiskSubject, Verdict
from payments.risk.sanctions import sanctions_list
from payments.risk.velocity import velocity_counts


class RulesRiskProvider:
    def assess(self, subject: RiskSubject) -> RiskDecision:
        for rule in (_sanctions, _countries, _amounts, _velocity):
            decision = rule(subject)
            if decision is not None:
                return decision
        return APPROVED


def _sanctions(subject: RiskSubject) -> RiskDecision | None:
    listed = sanctions_list()
    review: RiskDecision | None = None
    for party, name in (("buyer", subject.buyer_name), ("seller", subject.seller_name)):
        hit = listed.screen(name, threshold=settings.RISK_SANCTIONS_FUZZY_THRESHOLD)
        if hit is None:
            continue
        if hit.score == 1.0:
            return RiskDecision(Verdict.REJECT, f"sanctions: the {party}'s name is listed ({hit.listed})")
        review = review or RiskDecision(
            Verdict.REVIEW, f"sanctions: the {party}'s name is close to {hit.listed} ({hit.score:.2f})"
        )
    return review


def _countries(subject: RiskSubject) -> RiskDecision | None:
    if subject.buyer_country in settings.RISK_BLOCKED_COUNTRIES:
        return RiskDecision(Verdict.REJECT, f"country: {subject.buyer_country} is blocked")
    if subject.buyer_country in settings.RISK_REVIEW_COUNTRIES:
        return RiskDecision(Verdict.REVIEW, f"country: {subject.buyer_country} is reviewed")
    return None


def _amounts(subject: RiskSubject) -> RiskDecision | None:
    rejected = settings.RISK_REJECT_AMOUNTS.get(subject.currency)
    if rejected is not None and subject.amount > rejected:
        return RiskDecision(Verdict.REJECT, f"amount: above {rejected} {subject.currency}")
    reviewed = settings.RISK_REVIEW_AMOUNTS.get(subject.currency)
    if reviewed is not None and subject.amount > reviewed:
        return RiskDecision(Verdict.REVIEW, f"amount: above {reviewed} {subject.currency}")
    return None


def _velocity(subject: RiskSubject) -> RiskDecision | None:
    dimensions = {"buyer": subject.buyer_id}
    if subject.payment_method_token:
        dimensions["payment_method"] = subject.payment_method_token
    if subject.buyer_ip:
        dimensions["ip"] = subject.buyer_ip
    counts = velocity_counts(payment_id=subject.payment_id, dimensions=dimensions)
    if counts is None:
        return None
    for name, count in counts.items():
        if count > settings.RISK_VELOCITY_LIMIT:
            return RiskDecision(
                Verdict.REJECT,
                f"velocity: {count} payments by this {name.replace('_', ' ')} within "
                f"{settings.RISK_VELOCITY_WINDOW_SECONDS} s (limit {settings.RISK_VELOCITY_LIMIT})",
            )
    return None
