"""The sandbox's own control calls under ``/v1/sandbox/``: not Stripe's API, but authenticated with the same key and
answered in the same shapes. They take form or JSON bodies and are never struck by the API faults.

- ``GET /v1/sandbox/config``: the effective configuration (every knob of psp_sandbox/knobs.py) and the overrides.
- ``POST /v1/sandbox/config``: set knobs (``{"webhook_url": "http://…", "fault_5xx_rate": 0.1}``); ``null`` puts one
  back to its environment default; ``"reset": true`` puts them all back first.
- ``POST /v1/sandbox/payment_intents/{id}/authenticate`` with ``outcome=succeed|fail``: what the 3-D Secure page's
  buttons do, without a browser.
- ``POST /v1/sandbox/charges/{id}/dispute`` (optional ``amount``, ``reason``): the cardholder disputes a charge.
- ``POST /v1/sandbox/disputes/{id}/close`` with ``outcome=won|lost``.
"""

from __future__ import annotations

from typing import Any

from psp_sandbox import config, disputes, knobs, objects, services
from psp_sandbox.endpoint import Call, stripe_endpoint
from psp_sandbox.errors import InvalidRequest


def config_object() -> dict[str, Any]:
    return {
        "object": "sandbox_config",
        **config.current().as_dict(),
        "overrides": config.overrides(),
        "environment": {knob.name: knob.env for knob in knobs.KNOBS},
    }


def config_retrieve(call: Call) -> tuple[int, dict[str, Any]]:
    return 200, config_object()


def config_change(call: Call) -> tuple[int, dict[str, Any]]:
    changes = dict(call.params)
    reset = changes.pop("reset", False)
    if reset not in (True, False, "true", "false"):
        raise InvalidRequest("Invalid reset: true or false.", param="reset")
    config.config_update(changes=changes, reset=reset in (True, "true"))
    return 200, config_object()


def payment_intent_authenticate(call: Call, intent_id: str) -> tuple[int, dict[str, Any]]:
    outcome = call.params.get("outcome")
    if set(call.params) - {"outcome"}:
        unknown = sorted(set(call.params) - {"outcome"})[0]
        raise InvalidRequest(f"Received unknown parameter: {unknown}", code="parameter_unknown", param=unknown)
    if outcome not in ("succeed", "fail"):
        raise InvalidRequest("Invalid outcome: succeed or fail.", param="outcome")
    result = services.payment_intent_authenticate(intent_id=intent_id, succeed=outcome == "succeed")
    return 200, objects.payment_intent_object(result.intent, latest_charge=result.charge)


def dispute_open(call: Call, charge_id: str) -> tuple[int, dict[str, Any]]:
    amount, reason = disputes.dispute_open_input(call.params)
    return 200, objects.dispute_object(disputes.dispute_open(charge_id=charge_id, amount=amount, reason=reason))


def dispute_close(call: Call, dispute_id: str) -> tuple[int, dict[str, Any]]:
    outcome = call.params.get("outcome")
    if set(call.params) - {"outcome"} or outcome not in ("won", "lost"):
        raise InvalidRequest("Invalid outcome: won or lost (and nothing else).", param="outcome")
    return 200, objects.dispute_object(disputes.dispute_close(dispute_id=dispute_id, won=outcome == "won"))


sandbox_config = stripe_endpoint({"GET": config_retrieve, "POST": config_change}, control=True)
authenticate = stripe_endpoint({"POST": payment_intent_authenticate}, control=True)
dispute_open_view = stripe_endpoint({"POST": dispute_open}, control=True)
dispute_close_view = stripe_endpoint({"POST": dispute_close}, control=True)
