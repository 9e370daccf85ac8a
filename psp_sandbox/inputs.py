"""The parameters each endpoint takes, validated as Stripe validates them: unknown names, wrong types, missing and
out-of-range values are refused with 400 ``invalid_request_error`` naming the ``param``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from psp_sandbox import params as p
from psp_sandbox.errors import InvalidRequest

# Stripe's minimum charge is 0.50 in USD and EUR and 50 in JPY: 50 minor units; its maximum is eight digits.
MIN_AMOUNT = 50
MAX_AMOUNT = 99_999_999
# The presentment currencies the sandbox accepts (a subset of Stripe's, enough for the marketplace's).
CURRENCIES = frozenset(
    {"aud", "cad", "chf", "czk", "dkk", "eur", "gbp", "huf", "jpy", "kwd", "nok", "nzd", "pln", "sek", "usd"}
)

# Parameters of POST /v1/payment_intents the sandbox understands; anything else is "unknown", as at Stripe.
# Accepted and ignored, because they change nothing for a card in the sandbox: statement descriptors, receipt_email,
# off_session, payment_method_options, automatic_payment_methods.
_CREATE_PARAMS = {
    "amount",
    "currency",
    "payment_method",
    "payment_method_types",
    "payment_method_options",
    "automatic_payment_methods",
    "confirm",
    "capture_method",
    "description",
    "metadata",
    "return_url",
    "receipt_email",
    "off_session",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "expand",
}


@dataclass(frozen=True)
class PaymentIntentInput:
    amount: int
    currency: str
    payment_method: str | None
    confirm: bool
    metadata: dict[str, str]
    description: str = ""
    payment_method_types: list[str] = field(default_factory=lambda: ["card"])
    return_url: str = ""
    expand: list[str] = field(default_factory=list)


def payment_intent_create_input(params: dict[str, Any]) -> PaymentIntentInput:
    p.reject_unknown(params, _CREATE_PARAMS)
    amount = p.int_param(params, "amount", required=True)
    assert amount is not None  # required=True raised otherwise
    if amount < MIN_AMOUNT:
        raise InvalidRequest(
            f"Amount must be at least {MIN_AMOUNT} minor units.", code="amount_too_small", param="amount"
        )
    if amount > MAX_AMOUNT:
        raise InvalidRequest(
            f"Amount must be no more than {MAX_AMOUNT} minor units.", code="amount_too_large", param="amount"
        )
    currency = (p.str_param(params, "currency", required=True, max_length=3) or "").lower()
    if currency not in CURRENCIES:
        raise InvalidRequest(
            f"Invalid currency: {currency}. The sandbox supports: {', '.join(sorted(CURRENCIES))}.",
            code="parameter_invalid_string",
            param="currency",
        )
    capture_method = p.str_param(params, "capture_method")
    if capture_method not in (None, "automatic", "automatic_async"):
        raise InvalidRequest("Invalid capture_method: the sandbox captures automatically only.", param="capture_method")
    payment_method_types = p.list_param(params, "payment_method_types") or ["card"]
    for index, kind in enumerate(payment_method_types):
        if kind != "card":
            raise InvalidRequest(
                f"The payment method type provided: {kind} is invalid; the sandbox has cards only.",
                code="payment_method_invalid_parameter",
                param=f"payment_method_types[{index}]",
            )
    p.hash_param(params, "payment_method_options")
    p.hash_param(params, "automatic_payment_methods")
    p.bool_param(params, "off_session")
    payment_method = p.str_param(params, "payment_method", max_length=255)
    if payment_method is not None and not re.fullmatch(r"[A-Za-z0-9_]+", payment_method):
        raise InvalidRequest(f"Invalid payment_method: {payment_method}", param="payment_method")
    return PaymentIntentInput(
        amount=amount,
        currency=currency,
        payment_method=payment_method,
        confirm=p.bool_param(params, "confirm"),
        metadata=p.metadata_param(params),
        description=p.str_param(params, "description", max_length=1000) or "",
        payment_method_types=payment_method_types,
        return_url=p.str_param(params, "return_url", max_length=2048) or "",
        expand=p.list_param(params, "expand") or [],
    )


def retrieve_input(params: dict[str, Any]) -> list[str]:
    """GET /v1/payment_intents/{id}: ``expand`` only (``client_secret`` is for publishable keys, which we have not)."""
    p.reject_unknown(params, {"expand"})
    return p.list_param(params, "expand") or []


@dataclass(frozen=True)
class SearchInput:
    query: str
    limit: int
    page: str | None
    expand: list[str]


def search_input(params: dict[str, Any]) -> SearchInput:
    p.reject_unknown(params, {"query", "limit", "page", "expand"})
    query = p.str_param(params, "query", required=True, max_length=10_000)
    assert query is not None
    limit = p.int_param(params, "limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise InvalidRequest("Invalid limit: must be between 1 and 100.", param="limit")
    return SearchInput(
        query=query, limit=limit, page=p.str_param(params, "page"), expand=p.list_param(params, "expand") or []
    )
