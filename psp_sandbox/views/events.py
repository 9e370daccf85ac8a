"""Events: ``GET /v1/events`` and ``GET /v1/events/{id}``, as Stripe lists and shows them."""

from __future__ import annotations

from typing import Any

from psp_sandbox import inputs, objects, selectors
from psp_sandbox import params as p
from psp_sandbox.endpoint import Call, stripe_endpoint


def event_list(call: Call) -> tuple[int, dict[str, Any]]:
    params = dict(call.params)
    types = p.list_param(params, "types") or []
    params.pop("types", None)
    data = inputs.list_input(params, filters=frozenset({"type"}))
    if "type" in data.filters:
        types = [*types, data.filters["type"]]
    events, has_more = selectors.events_list(data, types=types)
    return 200, objects.list_object(call.request.path, [objects.event_object(e) for e in events], has_more=has_more)


def event_retrieve(call: Call, event_id: str) -> tuple[int, dict[str, Any]]:
    inputs.retrieve_input(call.params)
    return 200, objects.event_object(selectors.event_get(event_id))


events = stripe_endpoint({"GET": event_list})
event = stripe_endpoint({"GET": event_retrieve})
