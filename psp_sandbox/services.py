"""The sandbox's PaymentIntent writes: creating, confirming, settling and canceling intents, charging test cards,
booking fees, and the event each change emits (psp_sandbox/events.py).

The services run inside the transaction the idempotency layer opened for the request (psp_sandbox/idempotency.py),
so the charge, its balance transaction, its events and the stored response commit together; their own ``atomic``
blocks nest. The clock and the hosted pages call them outside any transaction, where those blocks are the transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from psp_sandbox import events, objects
from psp_sandbox.balance import balance_transaction_create
from psp_sandbox.cards import Behaviour, SandboxCard, TypedCard, card_for
from psp_sandbox.errors import CardError, InvalidRequest, ResourceMissing
from psp_sandbox.fees import fee_rule, fee_split
from psp_sandbox.inputs import PaymentIntentInput
from psp_sandbox.inserts import insert
from psp_sandbox.models import Charge, CheckoutSession, PaymentIntent, stripe_id


@dataclass(frozen=True)
class ConfirmResult:
    """The intent after a confirmation attempt; ``error`` is the card error the caller answers with (402)."""

    intent: PaymentIntent
    charge: Charge | None
    error: CardError | None = None


def payment_intent_create(*, data: PaymentIntentInput, base_url: str) -> ConfirmResult:
    """POST /v1/payment_intents: store the intent and, with ``confirm=true``, charge its test payment method."""
    card = None
    if data.payment_method is not None:
        card = card_for(data.payment_method)
        if card is None:
            # Refused before anything is stored: a 400, not saved under the idempotency key (Stripe does the same).
            raise InvalidRequest(
                f"No such PaymentMethod: '{data.payment_method}'", code="resource_missing", param="payment_method"
            )
    if data.confirm and card is None:
        raise InvalidRequest(
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    now = timezone.now()
    intent_id = stripe_id("pi")
    # Not saved yet: with confirm=true it is inserted once, in the state the confirmation leaves it in.
    intent = PaymentIntent(
        id=intent_id,
        amount=data.amount,
        currency=data.currency,
        status=(
            PaymentIntent.Status.REQUIRES_CONFIRMATION
            if card is not None
            else PaymentIntent.Status.REQUIRES_PAYMENT_METHOD
        ),
        payment_method=data.payment_method or "",
        payment_method_types=data.payment_method_types,
        description=data.description,
        metadata=data.metadata,
        payment_order_id=data.metadata.get("payment_order_id", ""),
        client_secret=f"{intent_id}_secret_{secrets.token_urlsafe(18)}",
        return_url=data.return_url,
        created=now,
    )
    # No savepoint: every caller (the idempotency layer, the hosted page) lets an error here roll back its whole
    # transaction, so a savepoint would only cost two round trips.
    with transaction.atomic(savepoint=False):
        if not data.confirm or card is None:
            insert(intent)
            return ConfirmResult(intent, None)
        # A Checkout Session links its intent only after creating it: none can be waiting on this one yet.
        return _announce(_confirm(intent, card, now=now, base_url=base_url), session_possible=False)


def payment_intent_confirm(
    *, intent_id: str, payment_method: str | None, return_url: str, base_url: str, card: TypedCard | None = None
) -> ConfirmResult:
    """POST /v1/payment_intents/{id}/confirm: charge the intent's (or a new) payment method. An intent back in
    ``requires_payment_method`` after a decline may be confirmed again with another card, as at Stripe. ``card``:
    the brand and last four digits of a number typed on the hosted page, kept on the intent and its charges."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().filter(pk=intent_id).first()
        if intent is None:
            raise ResourceMissing("payment_intent", intent_id, param="intent")
        confirmable = (PaymentIntent.Status.REQUIRES_PAYMENT_METHOD, PaymentIntent.Status.REQUIRES_CONFIRMATION)
        if intent.status not in confirmable:
            raise InvalidRequest(
                f"You cannot confirm this PaymentIntent because it has a status of {intent.status}.",
                code="payment_intent_unexpected_state",
            )
        chosen = payment_method or intent.payment_method
        sandbox_card = card_for(chosen) if chosen else None
        if sandbox_card is None:
            if chosen:
                raise InvalidRequest(
                    f"No such PaymentMethod: '{chosen}'", code="resource_missing", param="payment_method"
                )
            raise InvalidRequest(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
                param="payment_method",
            )
        intent.payment_method = chosen
        intent.return_url = return_url or intent.return_url
        intent.last_payment_error = None
        intent.card_brand = card.brand if card is not None else ""
        intent.card_last4 = card.last4 if card is not None else ""
        intent.save(
            update_fields=["payment_method", "return_url", "last_payment_error", "card_brand", "card_last4", "updated"]
        )
        return _announce(_confirm(intent, sandbox_card, now=timezone.now(), base_url=base_url))


def payment_intent_cancel(*, intent_id: str, reason: str | None = None) -> PaymentIntent:
    """POST /v1/payment_intents/{id}/cancel, and the cancel an expiring Checkout Session does: only an intent that has
    not moved money (nor started to) can be canceled."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().filter(pk=intent_id).first()
        if intent is None:
            raise ResourceMissing("payment_intent", intent_id, param="intent")
        if intent.status in (
            PaymentIntent.Status.SUCCEEDED,
            PaymentIntent.Status.PROCESSING,
            PaymentIntent.Status.CANCELED,
        ):
            raise InvalidRequest(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent.status}. Only a PaymentIntent with one of the following statuses may be canceled: "
                "requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.",
                code="payment_intent_unexpected_state",
            )
        intent.status = PaymentIntent.Status.CANCELED
        intent.cancellation_reason = reason or ""
        intent.canceled_at = timezone.now()
        intent.next_action = None
        intent.save(update_fields=["status", "cancellation_reason", "canceled_at", "next_action", "updated"])
        _announce(ConfirmResult(intent, intent.charges.order_by("-created", "-id").first()))
        return intent


def payment_intent_settle(*, intent_id: str, succeed: bool = True) -> ConfirmResult:
    """Finish an intent left ``requires_action`` (3-D Secure) or ``processing``: the building block of the
    asynchronous outcomes (a completed authentication, a processing payment that clears). Safe to run twice: an
    intent already final is returned as it is, and emits nothing.

    Not durable: the authentication control call runs it inside the idempotency layer's transaction; the clock and
    the authentication page call it on their own, where this block is the transaction."""
    now = timezone.now()
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().filter(pk=intent_id).first()
        if intent is None:
            raise ResourceMissing("payment_intent", intent_id, param="intent")
        charge = intent.charges.select_for_update().order_by("-created").first()
        if intent.status not in (PaymentIntent.Status.REQUIRES_ACTION, PaymentIntent.Status.PROCESSING):
            return ConfirmResult(intent, charge)
        card = card_for(intent.payment_method) or SandboxCard(Behaviour.SUCCEED)
        if charge is None:
            # 3-D Secure: Stripe creates the charge only once the cardholder has authenticated.
            charge = _charge_create(intent, card, status=Charge.Status.PENDING, now=now)
        if succeed:
            _charge_succeed(charge, now=now)
            intent.status = PaymentIntent.Status.SUCCEEDED
            intent.last_payment_error = None
        else:
            error = _decline_error(SandboxCard(Behaviour.DECLINE, decline_code="generic_decline"), intent, charge)
            _charge_fail(charge, error)
            intent.status = PaymentIntent.Status.REQUIRES_PAYMENT_METHOD
            intent.last_payment_error = error.as_error_object()
        intent.next_action = None
        intent.save(update_fields=["status", "last_payment_error", "next_action", "updated"])
        return _announce(ConfirmResult(intent, charge))


# The event each state an intent can reach announces; requires_payment_method does only after a failed attempt.
_INTENT_EVENTS = {
    PaymentIntent.Status.SUCCEEDED: "payment_intent.succeeded",
    PaymentIntent.Status.PROCESSING: "payment_intent.processing",
    PaymentIntent.Status.REQUIRES_ACTION: "payment_intent.requires_action",
    PaymentIntent.Status.CANCELED: "payment_intent.canceled",
}


def _announce(result: ConfirmResult, *, session_possible: bool = True) -> ConfirmResult:
    """Emit the event of the state the intent has just reached (in the transaction of the change).
    ``session_possible``: False when no Checkout Session can be paying the intent (it was created by this call)."""
    intent = result.intent
    event_type = _INTENT_EVENTS.get(PaymentIntent.Status(intent.status))
    if intent.status == PaymentIntent.Status.REQUIRES_PAYMENT_METHOD and intent.last_payment_error:
        event_type = "payment_intent.payment_failed"
    if event_type is not None:
        events.event_emit(event_type, objects.payment_intent_object(intent, latest_charge=result.charge))
    if intent.status == PaymentIntent.Status.SUCCEEDED and session_possible:
        _checkout_complete(intent)
    return result


def _checkout_complete(intent: PaymentIntent) -> None:
    """The Checkout Session an intent pays is complete once the intent succeeded, however it got there (the page,
    3-D Secure, the clock): in the same transaction, right after ``payment_intent.succeeded``."""
    session = CheckoutSession.objects.select_for_update().filter(payment_intent=intent).first()
    if session is None or session.status != CheckoutSession.Status.OPEN:
        return
    session.status = CheckoutSession.Status.COMPLETE
    session.payment_status = CheckoutSession.PaymentStatus.PAID
    session.completed_at = timezone.now()
    session.save(update_fields=["status", "payment_status", "completed_at"])
    events.event_emit("checkout.session.completed", objects.checkout_session_object(session))


def _confirm(intent: PaymentIntent, card: SandboxCard, *, now: datetime, base_url: str) -> ConfirmResult:
    """Charge ``intent`` with ``card``. The intent is saved in its new state (inserted, when it is not stored yet),
    then its charge, which is written once, in its final state when the outcome is immediate."""
    if card.behaviour is Behaviour.REQUIRE_ACTION:
        intent.status = PaymentIntent.Status.REQUIRES_ACTION
        intent.next_action = _authentication_action(intent, base_url=base_url)
        _intent_save(intent, ["status", "next_action", "updated"])
        return ConfirmResult(intent, None)
    if card.behaviour is Behaviour.PROCESS:
        intent.status = PaymentIntent.Status.PROCESSING
        _intent_save(intent, ["status", "updated"])
        charge = _charge_create(intent, card, status=Charge.Status.PENDING, now=now)
        return ConfirmResult(intent, charge)
    if card.behaviour is Behaviour.DECLINE:
        charge = _charge_build(intent, card, status=Charge.Status.FAILED, now=now)
        error = _decline_error(card, intent, charge)
        # Stripe keeps the intent, back in requires_payment_method, with the decline as its last_payment_error;
        # the 402's body carries the intent too, so a caller can read its state from the error alone.
        intent.status = PaymentIntent.Status.REQUIRES_PAYMENT_METHOD
        intent.last_payment_error = error.as_error_object()
        _intent_save(intent, ["status", "last_payment_error", "updated"])
        _charge_fail(charge, error)
        return ConfirmResult(intent, charge, error)
    intent.status = PaymentIntent.Status.SUCCEEDED
    _intent_save(intent, ["status", "updated"])
    charge = _charge_build(intent, card, status=Charge.Status.PENDING, now=now)
    _charge_succeed(charge, now=now)
    return ConfirmResult(intent, charge)


def _intent_save(intent: PaymentIntent, fields: list[str]) -> None:
    if intent._state.adding:
        insert(intent)
    else:
        intent.save(update_fields=fields)


def _charge_build(intent: PaymentIntent, card: SandboxCard, *, status: str, now: datetime) -> Charge:
    """A charge of ``intent``, not saved yet."""
    return Charge(
        id=stripe_id("ch"),
        payment_intent=intent,
        amount=intent.amount,
        currency=intent.currency,
        status=status,
        payment_method=intent.payment_method,
        card_brand=intent.card_brand or card.brand,
        card_last4=intent.card_last4 or card.last4,
        metadata=intent.metadata,
        payment_order_id=intent.payment_order_id,
        outcome={"network_status": "approved_by_network", "risk_level": "normal", "type": "authorized"},
        created=now,
    )


def _charge_create(intent: PaymentIntent, card: SandboxCard, *, status: str, now: datetime) -> Charge:
    return insert(_charge_build(intent, card, status=status, now=now))


def _charge_succeed(charge: Charge, *, now: datetime) -> None:
    """Book the charge's money and fee and mark it succeeded (inserting it, when it is not stored yet)."""
    percent, fixed = fee_rule()
    fee, _ = fee_split(charge.amount, percent=percent, fixed=fixed)
    charge.balance_transaction = balance_transaction_create(
        type="charge",
        reporting_category="charge",
        amount=charge.amount,
        fee=fee,
        currency=charge.currency,
        source=charge.id,
        description=charge.payment_intent.description,
        now=now,
    )
    charge.status = Charge.Status.SUCCEEDED
    charge.outcome = {**charge.outcome, "seller_message": "Payment complete."}
    if charge._state.adding:
        insert(charge)
    else:
        charge.save(update_fields=["balance_transaction", "status", "outcome"])


def _charge_fail(charge: Charge, error: CardError) -> None:
    """Mark the charge declined (inserting it, when it is not stored yet)."""
    charge.status = Charge.Status.FAILED
    charge.failure_code = error.code or "card_declined"
    charge.failure_message = error.message
    charge.outcome = {
        "network_status": "declined_by_network",
        "reason": error.decline_code,
        "risk_level": "normal",
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }
    if charge._state.adding:
        insert(charge)
    else:
        charge.save(update_fields=["status", "failure_code", "failure_message", "outcome"])


def _decline_error(card: SandboxCard, intent: PaymentIntent, charge: Charge) -> CardError:
    return CardError(
        card.message or "Your card was declined.",
        code="card_declined",
        decline_code=card.decline_code or "generic_decline",
        extra={"charge": charge.id, "payment_method": {"id": intent.payment_method, "object": "payment_method"}},
    )


def _authentication_action(intent: PaymentIntent, *, base_url: str) -> dict[str, object]:
    # Where the cardholder authenticates: the sandbox's page (psp_sandbox/views/pages.py), or its control call.
    url = f"{base_url}/v1/sandbox/authenticate/{intent.id}"
    if intent.return_url:
        return {"type": "redirect_to_url", "redirect_to_url": {"url": url, "return_url": intent.return_url}}
    return {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url}}


def payment_intent_authenticate(*, intent_id: str, succeed: bool) -> ConfirmResult:
    """The cardholder's answer to 3-D Secure (the authentication page, or its control call): only an intent waiting
    for that action can take it."""
    with transaction.atomic():
        intent = PaymentIntent.objects.select_for_update().filter(pk=intent_id).first()
        if intent is None:
            raise ResourceMissing("payment_intent", intent_id, param="intent")
        if intent.status != PaymentIntent.Status.REQUIRES_ACTION:
            raise InvalidRequest(
                f"This PaymentIntent is not waiting for authentication: its status is {intent.status}.",
                code="payment_intent_unexpected_state",
            )
        return payment_intent_settle(intent_id=intent_id, succeed=succeed)
