"""PaymentIntents: Stripe's paths, one function per operation; each validates, calls one service or selector and
renders Stripe's object (psp_sandbox/endpoint.py does the HTTP part)."""

from __future__ import annotations

from typing import Any

from psp_sandbox import inputs, objects, selectors, services
from psp_sandbox.endpoint import Call, stripe_endpoint


def payment_intent_create(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.payment_intent_create_input(call.params)
    expand = objects.expansions(data.expand)
    result = services.payment_intent_create(data=data, base_url=call.base_url)
    # Stripe's 402 carries the intent in its new state, so the caller learns it without another request.
    return _confirm_answer(result, expand)


def payment_intent_confirm(call: Call, intent_id: str) -> tuple[int, dict[str, Any]]:
    data = inputs.confirm_input(call.params)
    expand = objects.expansions(data.expand)
    result = services.payment_intent_confirm(
        intent_id=intent_id, payment_method=data.payment_method, return_url=data.return_url, base_url=call.base_url
    )
    return _confirm_answer(result, expand)


def payment_intent_cancel(call: Call, intent_id: str) -> tuple[int, dict[str, Any]]:
    reason = inputs.cancel_input(call.params)
    intent = services.payment_intent_cancel(intent_id=intent_id, reason=reason)
    return 200, objects.payment_intent_object(intent, latest_charge=selectors.latest_charge(intent))


def _confirm_answer(result: services.ConfirmResult, expand: frozenset[str]) -> tuple[int, dict[str, Any]]:
    intent = objects.payment_intent_object(result.intent, latest_charge=result.charge, expand=expand)
    if result.error is not None:
        body = result.error.as_body()
        body["error"]["payment_intent"] = intent
        return result.error.status, body
    return 200, intent


def payment_intent_retrieve(call: Call, intent_id: str) -> tuple[int, dict[str, Any]]:
    expand = objects.expansions(inputs.retrieve_input(call.params))
    intent = selectors.payment_intent_get(intent_id)
    return 200, objects.payment_intent_object(intent, latest_charge=selectors.latest_charge(intent), expand=expand)


def payment_intent_search(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.search_input(call.params)
    expand = objects.expansions(data.expand, prefix="data.")
    intents, next_page = selectors.payment_intent_search(query=data.query, limit=data.limit, page=data.page)
    rendered = [
        objects.payment_intent_object(intent, latest_charge=selectors.latest_charge(intent), expand=expand)
        for intent in intents
    ]
    return 200, objects.search_result(call.request.path, rendered, next_page=next_page)


payment_intents = stripe_endpoint({"POST": payment_intent_create})
payment_intent = stripe_endpoint({"GET": payment_intent_retrieve})
payment_intents_search = stripe_endpoint({"GET": payment_intent_search})
payment_intent_confirm_view = stripe_endpoint({"POST": payment_intent_confirm})
payment_intent_cancel_view = stripe_endpoint({"POST": payment_intent_cancel})
