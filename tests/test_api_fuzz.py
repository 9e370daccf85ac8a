"""The API under fuzzing: requests generated from our own OpenAPI schema (``/v1/schema/``) by schemathesis, sent to
the real application (PostgreSQL, Redis, the sandbox PSP in its own process) with a real API key.

Every answer must be one the schema documents, status code, content type, headers and body alike, and none may be a
5xx: the schema is the contract (DESIGN.md "API"), and a 500 is always a bug.

The run is bounded so that CI can afford it on every change: ``FUZZ_MAX_EXAMPLES`` requests per operation and phase
(default 40), derandomized so that the same code gives the same run. ``FUZZ_SEED=random`` (or a number) explores
beyond that run; a failure prints the request that reproduces it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.services import IssuedKey
from tests.conftest import captured_order, unique
from tests.sandbox import Sandbox

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "40"))
SEED = os.environ.get("FUZZ_SEED", "")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _known_objects(api: APIClient, post_payment: Callable[..., Any]) -> dict[str, list[str]]:
    """One client's real objects, so that the fuzzer's path parameters reach existing rows (200s, 409s and their
    bodies), not only 404s: a captured order with a refund, released and paid out."""
    seller = unique("fz_seller")
    order = captured_order(post_payment, seller, amount="100.00")
    payment_id = order.event.payment_id
    refund = api.post(
        f"/v1/payment-orders/{order.payment_order_id}/refunds",
        data={"amount": "1.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=unique("idem"),
    )
    assert refund.status_code == 201, refund.content
    assert api.post(f"/v1/payment-orders/{order.payment_order_id}/release").status_code == 200
    settings_update = api.patch(f"/v1/sellers/{seller}", data={"payout_account": "acct_fuzz"}, format="json")
    assert settings_update.status_code == 200, settings_update.content
    payouts = api.post(f"/v1/sellers/{seller}/payouts", data={}, format="json", HTTP_IDEMPOTENCY_KEY=unique("idem"))
    assert payouts.status_code == 201, payouts.content
    return {
        "payment_id": [payment_id],
        "payment_order_id": [order.payment_order_id],
        "seller_account": [seller],
        "refund_id": [refund.json()["refund_id"]],
        "payout_id": [payouts.json()["payouts"][0]["payout_id"]],
    }


@pytest.fixture
def api_schema(
    transactional_db: None,
    sandbox: Sandbox,
    settings: Any,
    issued_key: IssuedKey,
    api: APIClient,
    post_payment: Callable[..., Any],
) -> Any:
    """The schema as the application serves it, bound to the application itself (WSGI, in this process)."""
    from config.wsgi import application

    # Checkouts are registered at the sandbox PSP, a process of its own on the test database.
    settings.STRIPE_API_BASE = sandbox.url
    known = _known_objects(api, post_payment)
    schema = schemathesis.openapi.from_wsgi("/v1/schema/", application)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        # Half the time an id of a real object of this client, else whatever was generated.
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries(
            {name: st.sampled_from([value, *known.get(name, [])]) for name, value in path_parameters.items()}
        )

    return schema


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_documented_and_none_is_a_server_error(
    api_schema: Any, issued_key: IssuedKey, mode: GenerationMode
) -> None:
    """Each operation in turn, with requests that fit the schema (positive) and requests that break it (negative):
    every failing operation is reported, with the request that reproduces it, not only the first."""
    headers = {"Authorization": f"Bearer {issued_key.key}"}
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=not SEED,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        if SEED.isdigit():
            exercise = seed(int(SEED))(exercise)
        try:
            exercise()
        except Exception as exc:  # every operation runs; all failures are reported at the end
            failures.append(f"{operation.label}:\n{''.join(traceback.format_exception_only(exc))}")
    assert not failures, "\n\n".join(failures)
