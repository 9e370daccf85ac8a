"""Helpers shared by the sandbox PSP's test modules: control calls and the parameters of a typical PaymentIntent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests

from tests.conftest import unique

if TYPE_CHECKING:
    from tests.sandbox import Sandbox


def intent_params(payment_method: str = "pm_card_visa", **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "amount": 1999,
        "currency": "eur",
        "payment_method": payment_method,
        "confirm": True,
        "metadata": {"payment_order_id": unique("po"), "payment_id": unique("pay")},
    }
    params.update(overrides)
    return params


def auth(sandbox: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sandbox.api_key}"}


def configure(sandbox: Sandbox, **values: Any) -> dict[str, Any]:
    """POST /v1/sandbox/config with a JSON body; returns the effective configuration."""
    response = requests.post(f"{sandbox.url}/v1/sandbox/config", json=values, headers=auth(sandbox), timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def control(sandbox: Sandbox, path: str, **data: str) -> requests.Response:
    return requests.post(f"{sandbox.url}{path}", data=data, headers=auth(sandbox), timeout=10)


def get(sandbox: Sandbox, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sandbox.url}{path}", params=params, headers=auth(sandbox), timeout=10)
