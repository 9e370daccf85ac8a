"""The PSP's door into the system: ``POST /v1/webhooks/stripe``.

A plain Django view, not a DRF one: the signature covers the body byte for byte, so nothing may parse or re-encode
it before it is checked. No API key either: the PSP proves who it is with the signature.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from api.carddata import contains_card_number
from api.errors import error_body
from api.events import card_data_refused, security_event_at
from audit.models import SecurityEvent
from payments.psp.gateway import InvalidWebhook
from payments.webhooks import webhook_receive


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    payload = request.body
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return JsonResponse(error_body("payload_invalid", "The body is not UTF-8."), status=400)
    if contains_card_number(text):
        # Card data must never be stored, whoever sends it; the PSP will retry, and someone must look.
        card_data_refused(request, "body")
        return JsonResponse(
            error_body("card_data_not_allowed", "The event holds what looks like a card number; not stored."),
            status=400,
        )
    try:
        webhook_receive(psp="stripe", payload=payload, headers=request.headers)
    except InvalidWebhook as exc:
        kind = SecurityEvent.Kind.WEBHOOK_SIGNATURE_INVALID
        security_event_at(request, kind, actor="psp:stripe", detail=f"{exc.code}: {exc}")
        field = "Stripe-Signature" if exc.code.startswith("signature") else None
        return JsonResponse(error_body(exc.code, str(exc), field), status=400)
    return JsonResponse({"received": True})
