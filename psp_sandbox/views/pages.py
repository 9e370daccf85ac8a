"""The sandbox's HTML pages, for a buyer's browser: the 3-D Secure authentication page (and, later, the hosted
Checkout page). Plain server-side forms; no API key (a browser has none), no API faults.

Forms post without a CSRF token: nothing here acts for a logged-in user, and the sandbox has no sessions; the buttons
are still POSTs, so a link or a prefetch never decides a payment.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from psp_sandbox import services
from psp_sandbox.errors import StripeError
from psp_sandbox.models import PaymentIntent
from psp_sandbox.money import display


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
