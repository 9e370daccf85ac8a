"""The PaymentGateway on Stripe's API through stripe-python, for real Stripe or the local sandbox alike.

Real Stripe is ``STRIPE_API_KEY`` set and ``STRIPE_API_BASE`` unset; the sandbox is the default. The library's own
retries are off: the executor owns retries, so that each attempt is counted, backed off and dead-lettered in one place.
"""

from __future__ import annotations

from typing import Any

import stripe
from django.conf import settings

from payments.psp.gateway import (
    ChargeResult,
    ChargeStatus,
    PspConfigurationError,
    TransientPspError,
    UnknownPspOutcome,
)

# PaymentIntent statuses that mean "not finished yet" (3-D Secure, review, an asynchronous method).
_IN_PROGRESS = {"requires_action", "processing", "requires_capture", "requires_confirmation"}


def stripe_client() -> stripe.StripeClient:
    base = {"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses=base,  # type: ignore[arg-type]
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


class StripeGateway:
    def __init__(self, client: stripe.StripeClient | None = None) -> None:
        self.client = client or stripe_client()

    def charge(
        self, *, payment_order_id: str, amount: int, currency: str, payment_method: str, description: str = ""
    ) -> ChargeResult:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "confirm": True,
            "metadata": {"payment_order_id": payment_order_id},
            # No redirect-based methods: the storefront's own page handles 3-D Secure through the PSP's hosted flow.
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
        if description:
            params["description"] = description
        try:
            intent = self.client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": payment_order_id},
            )
        except stripe.CardError as exc:
            return _declined(exc)
        except stripe.InvalidRequestError as exc:
            # Permanent for this order (an unknown payment method, an amount the PSP refuses): no retry can help.
            return ChargeResult(
                ChargeStatus.FAILED,
                failure_code=exc.code or "invalid_request",
                failure_message=str(exc.user_message or exc),
            )
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        return _result(intent)

    def lookup(self, *, payment_order_id: str) -> ChargeResult | None:
        try:
            found = self.client.v1.payment_intents.search(
                {"query": f"metadata['payment_order_id']:'{payment_order_id}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        return _result(found.data[0]) if found.data else None


def _result(intent: Any) -> ChargeResult:
    if intent.status == "succeeded":
        return ChargeResult(ChargeStatus.SUCCEEDED, psp_reference=intent.id)
    if intent.status in _IN_PROGRESS:
        return ChargeResult(ChargeStatus.PENDING, psp_reference=intent.id)
    error = intent.get("last_payment_error") or {}
    return ChargeResult(
        ChargeStatus.FAILED,
        psp_reference=intent.id,
        failure_code=error.get("decline_code") or error.get("code") or intent.status,
        failure_message=error.get("message") or f"payment intent {intent.status}",
    )


def _declined(exc: stripe.CardError) -> ChargeResult:
    error = exc.error
    reference = ""
    if error is not None and error.payment_intent is not None:
        reference = error.payment_intent.id
    return ChargeResult(
        ChargeStatus.FAILED,
        psp_reference=reference,
        failure_code=(error.decline_code if error is not None else None) or exc.code or "card_declined",
        failure_message=exc.user_message or str(exc),
    )


def _classify(exc: stripe.StripeError) -> Exception:
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return PspConfigurationError(str(exc))
    if isinstance(exc, stripe.RateLimitError):
        return TransientPspError(f"rate limited: {exc}")
    if isinstance(exc, stripe.APIConnectionError):
        # stripe-python cannot tell a refused connection from a response that never came: either way the request
        # may have been applied. Settle it with the same idempotency key, never with a new one.
        return UnknownPspOutcome(str(exc))
    if isinstance(exc, stripe.IdempotencyError) and exc.http_status == 409:
        return TransientPspError("an earlier attempt with this key is still running at the PSP")
    if exc.http_status is not None and exc.http_status >= 500:
        # A 5xx may come after the charge was applied; the same idempotency key makes asking again safe.
        return TransientPspError(f"PSP error {exc.http_status}: {exc}")
    return PspConfigurationError(f"PSP refused the request: {exc}")
