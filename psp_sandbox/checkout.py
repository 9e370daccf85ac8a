"""Checkout Sessions (``mode=payment``): their parameters, creation, expiry, and paying one on the hosted page.

The hosted page (``/c/pay/{id}``, psp_sandbox/views/pages.py) pays a session through the same PaymentIntent services
as the API: at the buyer's first attempt it creates one intent for the session's total (metadata: the session's
``payment_intent_data[metadata]`` plus ``checkout_session_id``) and confirms it with the test payment method the
typed card stands for; after a decline the buyer may try another card, which confirms the same intent again (as
Stripe reuses the session's intent). The intent's success completes the session (psp_sandbox/services.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from psp_sandbox import events, objects, services
from psp_sandbox import params as p
from psp_sandbox.cards import TypedCard
from psp_sandbox.errors import InvalidRequest, ResourceMissing
from psp_sandbox.inputs import CURRENCIES, MAX_AMOUNT, MIN_AMOUNT, PaymentIntentInput
from psp_sandbox.models import CheckoutSession, PaymentIntent, stripe_id

# Stripe's bounds on expires_at: 30 minutes to 24 hours after creation; 24 hours when not given.
MIN_LIFETIME = timedelta(minutes=30)
MAX_LIFETIME = timedelta(hours=24)
MAX_LINE_ITEMS = 100
MAX_QUANTITY = 999_999
SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"

# Accepted and ignored, because they change nothing in the sandbox's card-only payment mode.
_IGNORED = {"locale", "submit_type", "billing_address_collection", "payment_method_types", "ui_mode"}
_CREATE_PARAMS = {
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer_email",
    "metadata",
    "payment_intent_data",
    "expires_at",
    "expand",
    *_IGNORED,
}


@dataclass(frozen=True)
class LineItem:
    name: str
    unit_amount: int
    quantity: int
    currency: str

    @property
    def amount(self) -> int:
        return self.unit_amount * self.quantity


@dataclass(frozen=True)
class SessionInput:
    line_items: list[LineItem]
    success_url: str
    cancel_url: str
    client_reference_id: str
    customer_email: str
    metadata: dict[str, str]
    payment_intent_metadata: dict[str, str]
    payment_intent_description: str
    expires_at: datetime | None
    expand: list[str] = field(default_factory=list)


def session_create_input(params: dict[str, Any]) -> SessionInput:
    p.reject_unknown(params, _CREATE_PARAMS)
    mode = p.str_param(params, "mode", required=True)
    if mode != "payment":
        raise InvalidRequest(f"Invalid mode: {mode}. The sandbox supports mode=payment only.", param="mode")
    success_url = p.str_param(params, "success_url", required=True, max_length=5000)
    assert success_url is not None
    for index, kind in enumerate(p.list_param(params, "payment_method_types") or []):
        if kind != "card":
            raise InvalidRequest(f"Invalid payment_method_types[{index}]: cards only.", param="payment_method_types")
    intent_data = p.hash_param(params, "payment_intent_data") or {}
    p.reject_unknown(
        {f"payment_intent_data[{key}]": value for key, value in intent_data.items()},
        {"payment_intent_data[metadata]", "payment_intent_data[description]"},
    )
    expires_at = p.int_param(params, "expires_at")
    return SessionInput(
        line_items=_line_items(params),
        success_url=success_url,
        cancel_url=p.str_param(params, "cancel_url", max_length=5000) or "",
        client_reference_id=p.str_param(params, "client_reference_id", max_length=200) or "",
        customer_email=p.str_param(params, "customer_email", max_length=512) or "",
        metadata=p.metadata_param(params),
        payment_intent_metadata=p.metadata_param(intent_data, "metadata"),
        payment_intent_description=p.str_param(intent_data, "description", max_length=1000) or "",
        expires_at=None if expires_at is None else datetime.fromtimestamp(expires_at, UTC),
        expand=p.list_param(params, "expand") or [],
    )


def _line_items(params: dict[str, Any]) -> list[LineItem]:
    raw = p.hash_param(params, "line_items")
    if not raw:
        raise InvalidRequest("Missing required param: line_items.", code="parameter_missing", param="line_items")
    if any(not key.isdigit() for key in raw) or len(raw) > MAX_LINE_ITEMS:
        raise InvalidRequest(f"Invalid array: line_items (at most {MAX_LINE_ITEMS}).", param="line_items")
    items = []
    for key in sorted(raw, key=int):
        name = f"line_items[{key}]"
        item = p.hash_param(raw, key) or {}
        p.reject_unknown({f"{name}[{k}]": v for k, v in item.items()}, {f"{name}[price_data]", f"{name}[quantity]"})
        price = p.hash_param(item, "price_data")
        if price is None:
            raise InvalidRequest(
                f"Missing required param: {name}[price_data] (the sandbox has no Price objects).",
                code="parameter_missing",
                param=f"{name}[price_data]",
            )
        p.reject_unknown(
            {f"{name}[price_data][{k}]": v for k, v in price.items()},
            {f"{name}[price_data][{k}]" for k in ("currency", "unit_amount", "product_data")},
        )
        currency = (p.str_param(price, "currency", required=True, max_length=3) or "").lower()
        if currency not in CURRENCIES:
            raise InvalidRequest(f"Invalid currency: {currency}.", param=f"{name}[price_data][currency]")
        unit_amount = p.int_param(price, "unit_amount", required=True)
        assert unit_amount is not None
        if not 0 <= unit_amount <= MAX_AMOUNT:
            raise InvalidRequest("Invalid unit_amount.", param=f"{name}[price_data][unit_amount]")
        product = p.hash_param(price, "product_data") or {}
        product_name = p.str_param(product, "name", required=True, max_length=250)
        quantity = p.int_param(item, "quantity", required=True)
        assert quantity is not None
        assert product_name is not None
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidRequest(f"Invalid quantity: {quantity}.", param=f"{name}[quantity]")
        items.append(LineItem(product_name, unit_amount, quantity, currency))
    return items


def session_create(*, data: SessionInput, base_url: str) -> CheckoutSession:
    """POST /v1/checkout/sessions. One currency for every line item, a total Stripe would charge, an expiry
    between 30 minutes and 24 hours from now."""
    currencies = sorted({item.currency for item in data.line_items})
    if len(currencies) > 1:
        raise InvalidRequest(
            f"All line items must have the same currency; got {', '.join(currencies)}.", param="line_items"
        )
    total = sum(item.amount for item in data.line_items)
    if not MIN_AMOUNT <= total <= MAX_AMOUNT:
        raise InvalidRequest(
            f"The Checkout Session's total amount must be between {MIN_AMOUNT} and {MAX_AMOUNT} minor units.",
            code="amount_too_small" if total < MIN_AMOUNT else "amount_too_large",
            param="line_items",
        )
    now = timezone.now()
    expires_at = data.expires_at or now + MAX_LIFETIME
    # A second of slack: the caller computed "now + 30 minutes" a moment before this request arrived.
    if not now + MIN_LIFETIME - timedelta(seconds=60) <= expires_at <= now + MAX_LIFETIME + timedelta(seconds=1):
        raise InvalidRequest(
            "The expires_at timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    session_id = stripe_id("cs_test", 58)  # Stripe's are that long: cs_test_a1b2…
    line_items = [
        {
            "id": stripe_id("li"),
            "price": stripe_id("price"),
            "product": stripe_id("prod"),
            "name": item.name,
            "unit_amount": item.unit_amount,
            "quantity": item.quantity,
            "amount": item.amount,
        }
        for item in data.line_items
    ]
    return CheckoutSession.objects.create(
        id=session_id,
        currency=currencies[0],
        amount_subtotal=total,
        amount_total=total,
        line_items=line_items,
        url=f"{base_url}/c/pay/{session_id}",
        success_url=data.success_url,
        cancel_url=data.cancel_url,
        client_reference_id=data.client_reference_id,
        customer_email=data.customer_email,
        metadata=data.metadata,
        payment_intent_metadata=data.payment_intent_metadata,
        payment_intent_description=data.payment_intent_description,
        expires_at=expires_at,
        created=now,
    )


def session_expire(*, session_id: str, only_if_due: bool = False) -> CheckoutSession | None:
    """POST /v1/checkout/sessions/{id}/expire, and the clock's expiry of sessions past ``expires_at``
    (``only_if_due``: a no-op, returning None, unless the session is open and due). An intent the buyer left
    unfinished is canceled with it, as at Stripe."""
    with transaction.atomic():
        session = CheckoutSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise ResourceMissing("checkout.session", session_id, param="session")
        intent = session.payment_intent
        busy = intent is not None and intent.status in (PaymentIntent.Status.SUCCEEDED, PaymentIntent.Status.PROCESSING)
        if only_if_due and (
            session.status != CheckoutSession.Status.OPEN or session.expires_at > timezone.now() or busy
        ):
            return None
        if session.status != CheckoutSession.Status.OPEN or busy:
            raise InvalidRequest(
                f'Only Checkout Sessions with a status in ["open"] can be expired. This one is {session.status}'
                + (" and its payment is under way." if busy else "."),
                code="checkout_session_unexpected_state" if busy else None,
            )
        if intent is not None and intent.status != PaymentIntent.Status.CANCELED:
            services.payment_intent_cancel(intent_id=intent.id, reason="abandoned")
        session.status = CheckoutSession.Status.EXPIRED
        session.save(update_fields=["status"])
        events.event_emit("checkout.session.expired", objects.checkout_session_object(session))
        return session


@dataclass(frozen=True)
class PayOutcome:
    """Where the hosted page sends the buyer next: a redirect, or the page again with an error."""

    redirect: str | None = None
    error: str | None = None


def success_url(session: CheckoutSession) -> str:
    return session.success_url.replace(SESSION_ID_PLACEHOLDER, session.id)


def session_pay(*, session_id: str, card: TypedCard, name: str, email: str, base_url: str) -> PayOutcome:
    """The hosted page's "Pay": one transaction under the session's row lock, so a double submit charges once."""
    with transaction.atomic(durable=True):
        session = CheckoutSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise ResourceMissing("checkout.session", session_id, param="session")
        if session.status == CheckoutSession.Status.OPEN and session.expires_at <= timezone.now():
            session_expire(session_id=session.id)
            session.refresh_from_db()
        if session.status != CheckoutSession.Status.OPEN:
            return PayOutcome(redirect=session.url)  # the page says it is complete or expired
        session.customer_details = {"name": name, "email": email or session.customer_email}
        session.save(update_fields=["customer_details"])
        intent = session.payment_intent
        if intent is None:
            intent = _session_intent(session, card, base_url=base_url)
        elif intent.status != PaymentIntent.Status.REQUIRES_PAYMENT_METHOD:
            # An attempt is under way (3-D Secure waiting) or over: no second charge, back to where it stands.
            return _next_step(session, intent)
        result = services.payment_intent_confirm(
            intent_id=intent.id, payment_method=card.payment_method, return_url="", base_url=base_url, card=card
        )
        if result.error is not None:
            return PayOutcome(error=result.error.message)
        session.refresh_from_db()
        return _next_step(session, result.intent)


def _session_intent(session: CheckoutSession, card: TypedCard, *, base_url: str) -> PaymentIntent:
    data = PaymentIntentInput(
        amount=session.amount_total,
        currency=session.currency,
        payment_method=card.payment_method,
        confirm=False,
        metadata={**session.payment_intent_metadata, "checkout_session_id": session.id},
        description=session.payment_intent_description,
        # 3-D Secure comes back to the hosted page, which sends the buyer on (psp_sandbox/views/pages.py).
        return_url=session.url,
    )
    intent = services.payment_intent_create(data=data, base_url=base_url).intent
    session.payment_intent = intent
    session.save(update_fields=["payment_intent"])
    return intent


def _next_step(session: CheckoutSession, intent: PaymentIntent) -> PayOutcome:
    if session.status == CheckoutSession.Status.COMPLETE:
        return PayOutcome(redirect=success_url(session))
    if intent.status == PaymentIntent.Status.REQUIRES_ACTION and intent.next_action:
        action = intent.next_action
        url = action.get("redirect_to_url", {}).get("url") or action.get("use_stripe_sdk", {}).get("stripe_js")
        return PayOutcome(redirect=url)
    return PayOutcome(redirect=session.url)


def sessions_expire_due(*, limit: int = 200) -> int:
    """The clock's part: expire open sessions past ``expires_at``. Returns how many expired."""
    due = CheckoutSession.objects.filter(status=CheckoutSession.Status.OPEN, expires_at__lte=timezone.now())
    expired = 0
    for session_id in due.order_by("expires_at").values_list("id", flat=True)[:limit]:
        if session_expire(session_id=session_id, only_if_due=True) is not None:
            expired += 1
    return expired
