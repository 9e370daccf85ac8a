"""The parameters each endpoint takes, validated as Stripe validates them: unknown names, wrong types, missing and
out-of-range values are refused with 400 ``invalid_request_error`` naming the ``param``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


@dataclass(frozen=True)
class ConfirmInput:
    payment_method: str | None
    return_url: str
    expand: list[str]


def confirm_input(params: dict[str, Any]) -> ConfirmInput:
    p.reject_unknown(params, {"payment_method", "return_url", "expand", "payment_method_options", "off_session"})
    payment_method = p.str_param(params, "payment_method", max_length=255)
    if payment_method is not None and not re.fullmatch(r"[A-Za-z0-9_]+", payment_method):
        raise InvalidRequest(f"Invalid payment_method: {payment_method}", param="payment_method")
    return ConfirmInput(
        payment_method=payment_method,
        return_url=p.str_param(params, "return_url", max_length=2048) or "",
        expand=p.list_param(params, "expand") or [],
    )


_CANCELLATION_REASONS = {"duplicate", "fraudulent", "requested_by_customer", "abandoned"}


def cancel_input(params: dict[str, Any]) -> str | None:
    p.reject_unknown(params, {"cancellation_reason", "expand"})
    reason = p.str_param(params, "cancellation_reason")
    if reason is not None and reason not in _CANCELLATION_REASONS:
        raise InvalidRequest(f"Invalid cancellation_reason: {reason}", param="cancellation_reason")
    return reason


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


_RANGE = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class ListInput:
    """A Stripe list call: ``limit``, the cursors, ``created`` (a timestamp or a range) and the endpoint's filters."""

    limit: int
    starting_after: str | None
    ending_before: str | None
    created: dict[str, datetime]
    filters: dict[str, str]
    expand: list[str]


def list_input(params: dict[str, Any], *, filters: frozenset[str] = frozenset()) -> ListInput:
    p.reject_unknown(params, {"limit", "starting_after", "ending_before", "created", "expand", *filters})
    limit = p.int_param(params, "limit")
    if limit is None:
        limit = 10
    if not 1 <= limit <= 100:
        raise InvalidRequest("Invalid limit: must be between 1 and 100.", param="limit")
    starting_after = p.str_param(params, "starting_after", max_length=255)
    ending_before = p.str_param(params, "ending_before", max_length=255)
    if starting_after and ending_before:
        raise InvalidRequest("You may only specify one of these parameters: ending_before, starting_after.")
    return ListInput(
        limit=limit,
        starting_after=starting_after,
        ending_before=ending_before,
        created=_created(params),
        filters={name: value for name in sorted(filters) if (value := p.str_param(params, name)) is not None},
        expand=p.list_param(params, "expand") or [],
    )


def _created(params: dict[str, Any]) -> dict[str, datetime]:
    raw = params.get("created")
    if raw is None:
        return {}
    if isinstance(raw, str):
        moment = _timestamp(p.int_param(params, "created"), "created")
        return {"gte": moment, "lte": moment}
    p.reject_unknown({f"created[{key}]": value for key, value in raw.items()}, {f"created[{op}]" for op in _RANGE})
    return {op: _timestamp(p.int_param(raw, op), f"created[{op}]") for op in _RANGE if op in raw}


def _timestamp(value: int | None, param: str) -> datetime:
    if value is None or not 0 <= value < 2**34:
        raise InvalidRequest(f"Invalid timestamp: {param}", code="parameter_invalid_integer", param=param)
    return datetime.fromtimestamp(value, UTC)
