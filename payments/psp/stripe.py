"""The PaymentGateway on Stripe's API through stripe-python, for real Stripe or the local sandbox alike.

Real Stripe is ``STRIPE_API_KEY`` set and ``STRIPE_API_BASE`` unset; the sandbox is the default. The library's own
retries are off: the executor owns retries, so that each attempt is counted, backed off and dead-lettered in one place.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import stripe
from django.conf import settings
from stripe.params import TransferCreateParams

from ops import context
from payments.psp.gateway import (
    ChargeResult,
    ChargeStatus,
    CheckoutItem,
    DisputeNotice,
    DisputeStatus,
    HostedCheckout,
    InvalidWebhook,
    PspConfigurationError,
    PspNotice,
    RefundResult,
    RefundStatus,
    TransferResult,
    TransferStatus,
    TransientPspError,
    UnknownPspOutcome,
    VerifiedEvent,
)
from payments.psp.observed import observed

logger = logging.getLogger(__name__)

# Our request id, sent with every call so that the PSP side can log it (the sandbox does); the PSP's own id for the
# call comes back in Request-Id and is logged beside ours.
REQUEST_ID_HEADER = "X-Request-Id"

# PaymentIntent statuses that mean "not finished yet" (3-D Secure, review, an asynchronous method).
_IN_PROGRESS = {"requires_action", "processing", "requires_capture", "requires_confirmation"}

# Refund statuses that are final failures: the money stayed with the platform. Any other status but succeeded
# (pending, requires_action) is a refund accepted and finished later: never call a refund failed the PSP did not.
_REFUND_FAILED = {"failed", "canceled"}

# Refund events whose object is a refund; Stripe's older charge.refund.updated is one of them.
_REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}

# Closed dispute statuses that cost us nothing: a dispute won, and an inquiry that closed without a chargeback.
_DISPUTE_NOT_LOST = {"won", "warning_closed"}

R = TypeVar("R")

# Objects per page of a list call: Stripe's largest page, so a lookup makes one call in all but rare cases.
LIST_PAGE_SIZE = 100


def stripe_client() -> stripe.StripeClient:
    return _client(settings.STRIPE_API_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS)


# One client per configuration and process, so that its HTTP connections are kept alive between calls: a new TLS
# handshake per charge would cost more than the charge. The requests client keeps one session per thread.
@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str, timeout: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=0,
        http_client=_TracedRequestsClient(timeout=timeout),
    )


class _TracedRequestsClient(stripe.RequestsClient):
    """stripe-python's HTTP client, plus the two ids that tie a call together across both sides: ours goes out as a
    header, and one log line per call carries it (from the log context) with the PSP's own Request-Id."""

    # RequestsClient's own signature, which stripe-python's typing does not reconcile with its base class's.
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        request_id = context.current().get("request_id")
        if request_id:
            headers = {**(headers or {}), REQUEST_ID_HEADER: request_id}
        path = urlsplit(url).path  # the query of a search names our ids, which the context already carries
        started = time.perf_counter()
        try:
            content, status, answer_headers = super().request(method, url, headers, post_data)
        except stripe.APIConnectionError as exc:
            logger.warning(
                "PSP call %s %s: no answer (%s)",
                method.upper(),
                path,
                exc.user_message or exc,
                extra={"duration_ms": _ms_since(started)},
            )
            raise
        logger.info(
            "PSP call %s %s: %d",
            method.upper(),
            path,
            status,
            extra={"psp_request_id": answer_headers.get("Request-Id", ""), "duration_ms": _ms_since(started)},
        )
        return content, status, answer_headers


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class StripeGateway:
    def __init__(self, client: stripe.StripeClient | None = None) -> None:
        self.client = client or stripe_client()

    @observed("charge")
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
        except stripe.StripeError as exc:
            # Refused for this order (an unknown payment method, an amount the PSP refuses): no retry can help.
            return _refusal_or_raise(exc, functools.partial(ChargeResult, ChargeStatus.FAILED))
        return _result(intent.to_dict())

    @observed("lookup")
    def lookup(self, *, payment_order_id: str) -> ChargeResult | None:
        try:
            found = self.client.v1.payment_intents.search(
                {"query": f"metadata['payment_order_id']:'{payment_order_id}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        return _result(found.data[0].to_dict()) if found.data else None

    @observed("refund")
    def refund(
        self, *, refund_id: str, payment_intent: str, amount: int, currency: str, payment_order_id: str
    ) -> RefundResult:
        # ``currency`` is not sent: a Stripe refund is always in its charge's currency.
        try:
            refund = self.client.v1.refunds.create(
                {
                    "payment_intent": payment_intent,
                    "amount": amount,
                    "metadata": {"refund_id": refund_id, "payment_order_id": payment_order_id},
                },
                {"idempotency_key": refund_id},
            )
        except stripe.StripeError as exc:
            # Refused for this refund (the charge is disputed, already refunded, or has less left than asked).
            return _refusal_or_raise(exc, functools.partial(RefundResult, RefundStatus.FAILED))
        return _refund_result(refund.to_dict())

    @observed("refund_lookup")
    def refund_lookup(self, *, refund_id: str, payment_intent: str) -> RefundResult | None:
        try:
            refunds = self.client.v1.refunds.list({"payment_intent": payment_intent, "limit": LIST_PAGE_SIZE})
            # Every page, through the list's cursor: a charge may have been refunded in more parts than fit in one.
            for refund in refunds.auto_paging_iter():
                found = refund.to_dict()
                if (found.get("metadata") or {}).get("refund_id") == refund_id:
                    return _refund_result(found)
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        return None

    @observed("transfer")
    def transfer(
        self, *, payout_id: str, destination: str, amount: int, currency: str, description: str = ""
    ) -> TransferResult:
        params: TransferCreateParams = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": payout_id,
            "metadata": {"payout_id": payout_id},
        }
        if description:
            params["description"] = description
        try:
            transfer = self.client.v1.transfers.create(params, {"idempotency_key": payout_id})
        except stripe.StripeError as exc:
            # Refused for this payout (an unknown destination account, a balance too short for it).
            return _refusal_or_raise(exc, functools.partial(TransferResult, TransferStatus.FAILED))
        return _transfer_result(transfer.to_dict())

    @observed("transfer_lookup")
    def transfer_lookup(self, *, payout_id: str) -> TransferResult | None:
        try:
            transfers = self.client.v1.transfers.list({"transfer_group": payout_id, "limit": LIST_PAGE_SIZE})
            found = [
                _transfer_result(transfer)
                for transfer in (listed.to_dict() for listed in transfers.auto_paging_iter())
                if (transfer.get("metadata") or {}).get("payout_id") == payout_id
            ]
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        # One transfer per payout under its idempotency key; should a second exist, a paid one is what happened.
        found.sort(key=lambda result: result.status != TransferStatus.PAID)
        return found[0] if found else None

    @observed("checkout_create")
    def checkout_create(
        self,
        *,
        nonce: str,
        currency: str,
        items: list[CheckoutItem],
        success_url: str,
        cancel_url: str,
        metadata: dict[str, str],
        customer_email: str = "",
    ) -> HostedCheckout:
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": item.amount,
                        "product_data": {"name": item.name},
                    },
                    "quantity": item.quantity,
                }
                for item in items
            ],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": nonce,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        if customer_email:
            params["customer_email"] = customer_email
        try:
            session = self.client.v1.checkout.sessions.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": nonce},
            )
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        return HostedCheckout(token=session.id, url=session.url or "")

    @observed("checkout_lookup")
    def checkout_lookup(self, *, token: str) -> ChargeResult | None:
        try:
            session = self.client.v1.checkout.sessions.retrieve(token).to_dict()
        except stripe.StripeError as exc:
            raise _classify(exc) from exc
        return _session_result(session, expired=session.get("status") == "expired")

    @observed("checkout_expire")
    def checkout_expire(self, *, token: str) -> None:
        try:
            self.client.v1.checkout.sessions.expire(token)
        except stripe.InvalidRequestError:
            return  # already complete or expired: nothing left to close
        except stripe.StripeError as exc:
            raise _classify(exc) from exc

    def ping(self, *, timeout: float) -> None:
        # Unauthenticated on purpose: reachability is the question, and no secret goes out with a probe.
        base = settings.STRIPE_API_BASE or stripe.DEFAULT_API_BASE
        response = requests.get(f"{base}/v1/", timeout=timeout)
        if response.status_code >= 500:
            raise TransientPspError(f"the PSP answered {response.status_code}")

    def webhook_verify(self, *, payload: bytes, headers: Mapping[str, str]) -> VerifiedEvent:
        signature = headers.get("Stripe-Signature", "")
        if not signature:
            raise InvalidWebhook("The Stripe-Signature header is missing.", code="signature_missing")
        try:
            # stripe-python's own check: HMAC-SHA256 of "{t}.{body}" against every v1 signature, in constant time,
            # and the timestamp within the tolerance (a replayed old delivery is refused).
            stripe.WebhookSignature.verify_header(
                payload, signature, settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(
                f"The signature does not verify: {exc.user_message or exc}", code="signature_invalid"
            ) from exc
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise InvalidWebhook("The body is not a JSON event.", code="payload_invalid") from exc
        if not isinstance(event, dict):
            raise InvalidWebhook("The body is not a Stripe event.", code="payload_invalid")
        event_id, event_type = event.get("id"), event.get("type")
        data_object = (event.get("data") or {}).get("object") or {}
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(data_object, dict):
            raise InvalidWebhook("The body is not a Stripe event.", code="payload_invalid")
        return VerifiedEvent(event_id=event_id, type=event_type, object_id=str(data_object.get("id") or ""))

    def webhook_notice(self, *, payload: str) -> PspNotice:
        event = json.loads(payload)
        event_type: str = event["type"]
        obj: dict[str, Any] = event["data"]["object"]
        if event_type.startswith("payment_intent."):
            order_id = (obj.get("metadata") or {}).get("payment_order_id")
            if not order_id:
                # A hosted-page charge: its session's events (below) move the orders, once, for the whole payment.
                return PspNotice(note="a hosted-page charge; the checkout session's events apply it")
            return PspNotice(result=_result(obj), payment_order_id=order_id)
        if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            result = _session_result(obj, expired=False)
            if result is None:
                return PspNotice(note="the session completed and its payment is still in progress")
            return PspNotice(result=result, checkout_token=obj["id"])
        if event_type == "checkout.session.expired":
            return PspNotice(result=_session_result(obj, expired=True), checkout_token=obj["id"])
        if event_type == "checkout.session.async_payment_failed":
            failure = ChargeResult(
                ChargeStatus.FAILED, failure_code="payment_failed", failure_message="The asynchronous payment failed."
            )
            return PspNotice(result=failure, checkout_token=obj["id"])
        if event_type in _REFUND_EVENTS:
            refund_id = (obj.get("metadata") or {}).get("refund_id")
            if not refund_id:
                return PspNotice(note=f"refund {obj['id']} is not ours: no refund_id in its metadata")
            return PspNotice(refund_id=refund_id, refund_result=_refund_result(obj))
        if event_type == "charge.refunded":
            return PspNotice(note="the charge's refund events carry each refund's result")
        if event_type in ("charge.dispute.created", "charge.dispute.funds_withdrawn"):
            # The same notice twice for one dispute: the consumer applies a dispute once, whichever comes first.
            return PspNotice(dispute=_dispute_notice(obj, DisputeStatus.OPEN))
        if event_type == "charge.dispute.closed":
            return PspNotice(dispute=_dispute_notice(obj, _closed_dispute_status(obj["status"])))
        if event_type == "charge.dispute.funds_reinstated":
            return PspNotice(note="the dispute's closed event carries its outcome")
        if event_type == "charge.dispute.updated":
            return PspNotice(note="a dispute's evidence or metadata changed; its money did not")
        if event_type.startswith("transfer."):
            return PspNotice(note="payouts are settled by the PSP's answer to the transfer and by lookups")
        return PspNotice(note=f"no handler for {event_type}")


def _session_result(session: Mapping[str, Any], *, expired: bool) -> ChargeResult | None:
    """A Checkout Session's outcome: paid, expired unpaid, or None while it is open (or paid asynchronously)."""
    if session.get("payment_status") == "paid":
        intent = session.get("payment_intent")
        reference = intent.get("id", "") if isinstance(intent, Mapping) else intent or ""
        return ChargeResult(ChargeStatus.SUCCEEDED, psp_reference=reference)
    if expired:
        return ChargeResult(
            ChargeStatus.FAILED,
            failure_code="checkout_expired",
            failure_message="The buyer did not pay before the hosted page expired.",
        )
    return None


def _result(intent: Mapping[str, Any]) -> ChargeResult:
    status = intent["status"]
    if status == "succeeded":
        return ChargeResult(ChargeStatus.SUCCEEDED, psp_reference=intent["id"])
    if status in _IN_PROGRESS:
        return ChargeResult(ChargeStatus.PENDING, psp_reference=intent["id"], action_url=_action_url(intent))
    error = intent.get("last_payment_error") or {}
    return ChargeResult(
        ChargeStatus.FAILED,
        psp_reference=intent["id"],
        failure_code=error.get("decline_code") or error.get("code") or status,
        failure_message=error.get("message") or f"payment intent {status}",
    )


def _refund_result(refund: Mapping[str, Any]) -> RefundResult:
    status = refund["status"]
    if status == "succeeded":
        return RefundResult(RefundStatus.SUCCEEDED, psp_reference=refund["id"])
    if status not in _REFUND_FAILED:
        return RefundResult(RefundStatus.PENDING, psp_reference=refund["id"])
    reason = refund.get("failure_reason") or status
    return RefundResult(
        RefundStatus.FAILED,
        psp_reference=refund["id"],
        failure_code=reason,
        failure_message=f"refund {status}: {reason}",
    )


def _transfer_result(transfer: Mapping[str, Any]) -> TransferResult:
    if transfer.get("reversed"):
        # Reversed in full: the money came back to the platform, the seller got nothing from it.
        return TransferResult(
            TransferStatus.FAILED,
            psp_reference=transfer["id"],
            failure_code="reversed",
            failure_message="The transfer was reversed in full.",
        )
    return TransferResult(TransferStatus.PAID, psp_reference=transfer["id"])


def _closed_dispute_status(status: str) -> DisputeStatus:
    if status in _DISPUTE_NOT_LOST:
        return DisputeStatus.WON
    if status == "lost":
        return DisputeStatus.LOST
    return DisputeStatus.OPEN  # not a closing status: nothing is decided yet


def _dispute_notice(dispute: Mapping[str, Any], status: DisputeStatus) -> DisputeNotice:
    # Stripe always expands a dispute's balance transactions: the withdrawal (category "dispute") carries the dispute
    # fee, a reinstatement ("dispute_reversal") gives it back; the fee withdrawn is the withdrawals' alone.
    fee = sum(
        txn.get("fee") or 0
        for txn in dispute.get("balance_transactions") or []
        if isinstance(txn, Mapping) and txn.get("reporting_category") == "dispute"
    )
    return DisputeNotice(
        dispute_id=dispute["id"],
        payment_intent=dispute.get("payment_intent") or "",
        amount=dispute["amount"],
        currency=dispute["currency"].upper(),
        fee=fee,
        status=status,
        reason=dispute.get("reason") or "",
    )


def _action_url(intent: Mapping[str, Any]) -> str:
    next_action = intent.get("next_action") or {}
    redirect = next_action.get("redirect_to_url") or {}
    sdk = next_action.get("use_stripe_sdk") or {}
    return str(redirect.get("url") or sdk.get("stripe_js") or "")


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


def _refusal_or_raise(exc: stripe.StripeError, failed: Callable[..., R]) -> R:
    """A request the PSP refused (an invalid request, a 400) as the FAILED result ``failed`` makes with its code and
    message, since asking again gets the same answer; any other error raised as its class (``_classify``)."""
    if isinstance(exc, stripe.InvalidRequestError):
        return failed(failure_code=exc.code or "invalid_request", failure_message=str(exc.user_message or exc))
    raise _classify(exc) from exc


def _classify(exc: stripe.StripeError) -> Exception:
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return PspConfigurationError(str(exc))
    if isinstance(exc, stripe.RateLimitError):
        return TransientPspError(f"rate limited: {exc}")
    if isinstance(exc, stripe.APIConnectionError):
        # stripe-python cannot tell a refused connection from a response that never came: either way the request
        # may have been applied. Settle it with the same idempotency key, never with a new one.
        return UnknownPspOutcome(str(exc))
    if exc.http_status == 409:
        # idempotency_key_in_use (stripe-python raises it as a plain APIError): a request with this key is still
        # running at the PSP. Asking again later with the same key gets its answer.
        return TransientPspError("an earlier attempt with this key is still running at the PSP")
    if exc.http_status is not None and exc.http_status >= 500:
        # A 5xx may come after the charge was applied, and Stripe stores a 500 under the idempotency key and answers
        # every retry with it: the outcome is unknown until a lookup says what happened.
        return UnknownPspOutcome(f"PSP error {exc.http_status}: {exc}")
    return PspConfigurationError(f"PSP refused the request: {exc}")
