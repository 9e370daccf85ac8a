"""An external risk provider over HTTP: the order's subject as JSON, the verdict back.

Request: ``POST RISK_HTTP_URL`` with the RiskSubject's fields (amount as a decimal string) and, when set,
``Authorization: Bearer RISK_HTTP_TOKEN``. Answer: ``{"verdict": "approve" | "reject" | "review", "rule": "..."}``.
A provider that does not answer in RISK_HTTP_TIMEOUT_SECONDS, or answers anything else, gives RISK_HTTP_FALLBACK
(review by default: a payment is held for a person rather than sent unchecked or refused for our outage).
"""

from __future__ import annotations

import dataclasses
import logging

import requests
from django.conf import settings

from ledger.money import format_amount
from payments.risk import RiskDecision, RiskSubject, Verdict

logger = logging.getLogger(__name__)


class HttpRiskProvider:
    def assess(self, subject: RiskSubject) -> RiskDecision:
        body = {**dataclasses.asdict(subject), "amount": format_amount(subject.amount, subject.currency)}
        headers = {"Authorization": f"Bearer {settings.RISK_HTTP_TOKEN}"} if settings.RISK_HTTP_TOKEN else {}
        try:
            response = requests.post(
                settings.RISK_HTTP_URL, json=body, headers=headers, timeout=float(settings.RISK_HTTP_TIMEOUT_SECONDS)
            )
            response.raise_for_status()
            answer = response.json()
            verdict = Verdict(answer["verdict"])
            return RiskDecision(verdict, f"external: {answer.get('rule') or verdict.value}"[:200])
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "risk provider unavailable; fallback %s",
                settings.RISK_HTTP_FALLBACK,
                extra={"payment_order_id": subject.payment_order_id},
                exc_info=True,
            )
            return RiskDecision(Verdict(settings.RISK_HTTP_FALLBACK), f"external: unavailable ({type(exc).__name__})")
