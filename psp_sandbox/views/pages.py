"""The sandbox's HTML pages, for a buyer's browser: the hosted Checkout page and the 3-D Secure authentication page.
Plain server-side forms; no API key (a browser has none), no API faults.

Card data typed on the Checkout page is read once, turned into a test payment method with its brand and last four
digits (psp_sandbox/cards.py), and forgotten: never stored, never logged, never echoed back into the page.

Forms post without a CSRF token: nothing here acts for a logged-in user, and the sandbox has no sessions; the buttons
are still POSTs, so a link or a prefetch never decides a payment.
"""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from psp_sandbox import checkout, services
from psp_sandbox.cards import typed_card
from psp_sandbox.errors import StripeError
from psp_sandbox.models import CheckoutSession, PaymentIntent
from psp_sandbox.money import display


@csrf_exempt
@require_http_methods(["GET", "POST"])
def checkout_page(request: HttpRequest, session_id: str) -> HttpResponse:
    session = CheckoutSession.objects.select_related("payment_intent").filter(pk=session_id).first()
    if session is None:
        return _done(request, "Unknown checkout session", "This payment page does not exist.", status=404)
    if request.method == "GET":
        return _checkout_render(request, session)
    name = request.POST.get("billingName", "").strip()[:200]
    email = request.POST.get("email", "").strip()[:512]
    card = typed_card(request.POST.get("cardNumber", ""))
    problem = "Your card number is invalid." if card is None else _card_problem(request.POST.dict(), name)
    if problem is not None or card is None:
        return _checkout_render(request, session, error=problem, name=name, email=email, status=400)
    outcome = checkout.session_pay(
        session_id=session.id, card=card, name=name, email=email, base_url=f"{request.scheme}://{request.get_host()}"
    )
    if outcome.error is not None:
        session.refresh_from_db()
        return _checkout_render(request, session, error=outcome.error, name=name, email=email, status=402)
    return HttpResponseRedirect(outcome.redirect or session.url, status=303)


def _checkout_render(
    request: HttpRequest,
    session: CheckoutSession,
    *,
    error: str | None = None,
    name: str = "",
    email: str = "",
    status: int = 200,
) -> HttpResponse:
    state = session.status
    if state == CheckoutSession.Status.OPEN and session.expires_at <= timezone.now():
        state = CheckoutSession.Status.EXPIRED  # the clock will record it; the buyer must not pay meanwhile
    intent = session.payment_intent
    if error is None and intent is not None and intent.status == PaymentIntent.Status.REQUIRES_PAYMENT_METHOD:
        # The last attempt failed (a decline, or 3-D Secure failed): say so, and let the buyer try another card.
        error = (intent.last_payment_error or {}).get("message")
    context = {
        "state": state,
        "items": [
            {"name": item["name"], "quantity": item["quantity"], "amount": display(item["amount"], session.currency)}
            for item in session.line_items
        ],
        "total": display(session.amount_total, session.currency),
        "error": error,
        "name": name,
        "email": email or session.customer_email,
        "cancel_url": session.cancel_url,
        "success_url": checkout.success_url(session),
    }
    return render(request, "psp_sandbox/checkout.html", context, status=status)


def _card_problem(form: dict[str, str], name: str) -> str | None:
    if not re.fullmatch(r"[0-9]{3,4}", form.get("cardCvc", "").strip()):
        return "Your card's security code is incomplete."
    if not name:
        return "Enter the name on the card."
    return _expiry_problem(form.get("cardExpiry", ""))


def _expiry_problem(raw: str) -> str | None:
    match = re.fullmatch(r"\s*(0?[1-9]|1[0-2])\s*/\s*([0-9]{2}|20[0-9]{2})\s*", raw)
    if match is None:
        return "Your card's expiration date is incomplete."
    month, year = int(match[1]), int(match[2]) % 100 + 2000
    today = timezone.now().date()
    if date(year, month, 1) < today.replace(day=1):
        return "Your card's expiration year is in the past."
    return None


@csrf_exempt
@require_http_methods(["GET", "POST"])
def authenticate(request: HttpRequest, intent_id: str) -> HttpResponse:
    intent = PaymentIntent.objects.filter(pk=intent_id).first()
    if intent is None:
        return _done(request, "Unknown payment", f"There is no payment {intent_id}.", status=404)
    if request.method == "POST":
        outcome = request.POST.get("outcome")
        if outcome not in ("succeed", "fail"):
            return _done(request, "Bad request", "Choose to complete or to fail the authentication.", status=400)
        try:
            result = services.payment_intent_authenticate(intent_id=intent_id, succeed=outcome == "succeed")
        except StripeError:
            intent.refresh_from_db()
        else:
            intent = result.intent
        return _after_authentication(request, intent)
    waiting = intent.status == PaymentIntent.Status.REQUIRES_ACTION
    context = {"amount": display(intent.amount, intent.currency), "waiting": waiting, "status": intent.status}
    return render(request, "psp_sandbox/authenticate.html", context)


def _after_authentication(request: HttpRequest, intent: PaymentIntent) -> HttpResponse:
    session = CheckoutSession.objects.filter(payment_intent=intent).first()
    if session is not None:
        # A Checkout payment: on to the shop's success URL, or back to the page to try another card.
        paid = session.status == CheckoutSession.Status.COMPLETE
        return HttpResponseRedirect(checkout.success_url(session) if paid else session.url, status=303)
    if intent.return_url:
        # Stripe's redirect back: the intent and how the authentication went, in the query string.
        status = "succeeded" if intent.status == PaymentIntent.Status.SUCCEEDED else "failed"
        query = {
            "payment_intent": intent.id,
            "payment_intent_client_secret": intent.client_secret,
            "redirect_status": status,
        }
        return HttpResponseRedirect(_with_query(intent.return_url, query), status=303)
    if intent.status == PaymentIntent.Status.SUCCEEDED:
        return _done(request, "Payment authenticated", "The payment succeeded. You can close this page.")
    return _done(request, "Authentication failed", "The payment was not authenticated and did not go through.")


def _done(request: HttpRequest, heading: str, message: str, *, link: str = "", status: int = 200) -> HttpResponse:
    context = {"heading": heading, "message": message, "link": link}
    return render(request, "psp_sandbox/done.html", context, status=status)


def _with_query(url: str, query: dict[str, str]) -> str:
    parts = urlsplit(url)
    joined = f"{parts.query}&{urlencode(query)}" if parts.query else urlencode(query)
    return urlunsplit(parts._replace(query=joined))
