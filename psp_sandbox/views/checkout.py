"""Checkout Sessions: create, retrieve, list, expire, and their line items, as Stripe's API has them."""

from __future__ import annotations

from typing import Any

from psp_sandbox import checkout, inputs, objects, selectors
from psp_sandbox.endpoint import Call, stripe_endpoint
from psp_sandbox.errors import InvalidRequest


def _expansions(requested: list[str], *, prefix: str = "") -> frozenset[str]:
    wanted = set()
    for index, name in enumerate(requested):
        field = name.removeprefix(prefix)
        if not name.startswith(prefix) or field not in objects.SESSION_EXPANDABLE:
            raise InvalidRequest(f"This property cannot be expanded ({name}).", param=f"expand[{index}]")
        wanted.add(field)
    return frozenset(wanted)


def session_create(call: Call) -> tuple[int, dict[str, Any]]:
    data = checkout.session_create_input(call.params)
    expand = _expansions(data.expand)
    session = checkout.session_create(data=data, base_url=call.base_url)
    return 200, objects.checkout_session_object(session, expand=expand)


def session_retrieve(call: Call, session_id: str) -> tuple[int, dict[str, Any]]:
    expand = _expansions(inputs.retrieve_input(call.params))
    return 200, objects.checkout_session_object(selectors.checkout_session_get(session_id), expand=expand)


def session_list(call: Call) -> tuple[int, dict[str, Any]]:
    data = inputs.list_input(call.params, filters=frozenset({"payment_intent", "status"}))
    expand = _expansions(data.expand, prefix="data.")
    sessions, has_more = selectors.checkout_sessions_list(data)
    rendered = [objects.checkout_session_object(session, expand=expand) for session in sessions]
    return 200, objects.list_object(call.request.path, rendered, has_more=has_more)


def session_expire(call: Call, session_id: str) -> tuple[int, dict[str, Any]]:
    expand = _expansions(inputs.retrieve_input(call.params))
    session = checkout.session_expire(session_id=session_id)
    assert session is not None
    return 200, objects.checkout_session_object(session, expand=expand)


def session_line_items(call: Call, session_id: str) -> tuple[int, dict[str, Any]]:
    inputs.list_input(call.params)
    session = selectors.checkout_session_get(session_id)
    return 200, objects.list_object(call.request.path, objects.line_item_objects(session), has_more=False)


sessions = stripe_endpoint({"POST": session_create, "GET": session_list})
session = stripe_endpoint({"GET": session_retrieve})
expire = stripe_endpoint({"POST": session_expire})
line_items = stripe_endpoint({"GET": session_line_items})
